import { randomUUID } from "node:crypto";
import * as http from "node:http";
import * as https from "node:https";
import * as Minio from "minio";
import { clientTlsOptions } from "@satchel/proto";
import type { StorageNodeConfig } from "../config.js";

/** Lifetime of the presigned URL of one shard read (used at once). */
const PRESIGN_SECONDS = 60;
/**
 * A small object every node carries once Satchel has used its disk. A node that answers without it
 * has a new (replaced, wiped) disk: every shard recorded on it must be checked and rebuilt.
 */
const IDENTITY_KEY = "satchel-node/identity";

/** What a probe found: the node answers with its disk, answers with a new empty disk, or does not answer. */
export type ProbeResult = "up" | "new-disk" | "down";

/** Thrown when a shard object is absent from its node. */
export class ShardMissingError extends Error {
  constructor(readonly node: string, readonly key: string) {
    super(`shard ${key} is missing on ${node}`);
  }
}

/**
 * Thrown when a node answers but cannot produce an object's bytes: MinIO's own bitrot check failed
 * (503 SlowDownRead before the body, or the body cut short after a 200). The same 503 comes from a
 * node whose whole drive went offline, so the caller tells the two apart by reading the node's
 * identity object (see `answers`).
 */
export class ShardUnreadableError extends Error {
  constructor(readonly node: string, readonly key: string, detail: string) {
    super(`${node} cannot read ${key}: ${detail}`);
  }
}

/**
 * One MinIO node seen as a plain disk service: put, get and delete whole shard objects.
 * This folder is the only place that knows about the S3 API.
 */
export class StorageNode {
  private readonly client: Minio.Client;
  readonly name: string;
  readonly bucket: string;
  /**
   * False after a connection failure, until a health probe answers again. A request that only
   * timed out does not count against a node that answered other requests meanwhile: it is busy
   * (a burst of shard writes on a loaded machine), not down.
   */
  healthy = true;
  /** When the node last served an object or confirmed one absent (performance.now()). */
  private lastAnswer = -Infinity;
  /**
   * Idle sockets are dropped after 20 s, before MinIO's own idle timeout (30 s) closes them under
   * a request; the race that remains is retried once (see `again`).
   */
  private readonly agent: http.Agent;
  /** http.request, or https.request for a node served over TLS. */
  private readonly request: typeof http.request;

  /** `ca`: what an https node's certificate must chain to (default: SATCHEL_TLS_CA's file). */
  constructor(config: StorageNodeConfig, private readonly timeoutMs: number, ca?: Buffer) {
    const url = new URL(config.endpoint);
    const useSSL = url.protocol === "https:";
    this.name = config.name;
    this.bucket = config.bucket;
    const agentOptions = { keepAlive: true, maxSockets: 64, timeout: 20_000 };
    this.agent = useSSL ? new https.Agent({ ...agentOptions, ...clientTlsOptions(ca) }) : new http.Agent(agentOptions);
    this.request = useSSL ? https.request : http.request;
    this.client = new Minio.Client({
      endPoint: url.hostname,
      port: Number(url.port),
      useSSL,
      // The SDK's own calls (list, delete, bucket checks) trust the same CA.
      ...(useSSL ? { transportAgent: new https.Agent({ keepAlive: true, ...clientTlsOptions(ca) }) } : {}),
      accessKey: config.accessKey,
      secretKey: config.secretKey,
      // A fixed region: the SDK would otherwise ask each node for it.
      region: "us-east-1",
    });
    // Sign requests with UNSIGNED-PAYLOAD: otherwise the client and MinIO each SHA-256 every shard
    // byte just for the S3 signature, doubling the hashing of a write on a 2-core machine. Shard
    // integrity is already guarded by the shard header's CRC-32 and the block's SHA-256.
    this.client.enableSHA256 = false;
  }

  /**
   * Writes an object from its parts (a shard's header and payload) without joining them: a plain
   * keep-alive HTTP PUT of a presigned URL, the parts written one after the other.
   */
  async put(key: string, parts: Uint8Array[]): Promise<void> {
    await this.withTimeout(`put ${key}`, again(() => this.sendObject(key, parts)));
  }

  private async sendObject(key: string, parts: Uint8Array[]): Promise<void> {
    const url = await this.client.presignedPutObject(this.bucket, key, PRESIGN_SECONDS);
    const length = parts.reduce((n, p) => n + p.length, 0);
    await new Promise<void>((resolve, reject) => {
      const req = this.request(url, { method: "PUT", agent: this.agent, headers: { "content-length": length } }, (res) => {
        const body: Buffer[] = [];
        res.on("data", (c: Buffer) => void (body.length < 8 && body.push(c)));
        res.on("end", () => {
          if (res.statusCode === 200) {
            this.answered();
            return resolve();
          }
          const code = /<Code>([^<]+)<\/Code>/.exec(Buffer.concat(body).toString("utf8"))?.[1] ?? "";
          reject(new Error(`${this.name}: PUT ${key} answered HTTP ${res.statusCode} ${code}`));
        });
        res.on("error", reject);
      });
      req.on("error", (err) => reject(staleOr(req, err)));
      for (const [i, part] of parts.entries()) {
        if (i < parts.length - 1) req.write(part);
        else req.end(part);
      }
      if (parts.length === 0) req.end();
    });
  }

  /** A shard object's bytes; timeoutMs lets a hedged read give up on a slow node early. */
  async get(key: string, timeoutMs?: number): Promise<Buffer> {
    return this.withTimeout(`get ${key}`, again(() => this.fetchObject(key)), timeoutMs);
  }

  /** `length` bytes of an object from `offset` (one ranged GET): a block packed in a volume segment. */
  async getRange(key: string, offset: number, length: number, timeoutMs?: number): Promise<Buffer> {
    if (length <= 0) throw new RangeError(`a ranged read needs a positive length, got ${length}`);
    return this.withTimeout(`get ${key} [${offset}, +${length})`, again(() => this.fetchObject(key, { offset, length })), timeoutMs);
  }

  /**
   * A plain keep-alive HTTP GET of a presigned URL, read straight into a buffer of the object's
   * length: measured cheaper in CPU than the SDK's stream of small chunks on this hot read path.
   */
  private async fetchObject(key: string, range?: { offset: number; length: number }): Promise<Buffer> {
    const url = await this.client.presignedGetObject(this.bucket, key, PRESIGN_SECONDS);
    const headers = range ? { range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {};
    return new Promise<Buffer>((resolve, reject) => {
      const req = this.request(url, { agent: this.agent, headers }, (res) => {
        if (res.statusCode === 404) {
          this.answered();
          res.resume();
          reject(new ShardMissingError(this.name, key));
          return;
        }
        if (res.statusCode !== (range ? 206 : 200)) {
          const body: Buffer[] = [];
          res.on("data", (c: Buffer) => void (body.length < 8 && body.push(c)));
          res.on("end", () => {
            const text = Buffer.concat(body).toString("utf8");
            const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? "";
            // 503 SlowDownRead: the object's data failed MinIO's bitrot check (or the drive is
            // offline); 500 with a msgp/CRC message: its xl.meta is damaged.
            if (res.statusCode === 503 && code === "SlowDownRead") reject(new ShardUnreadableError(this.name, key, "MinIO answered 503 SlowDownRead"));
            else if (res.statusCode === 500 && /msgp:|CRC mismatch/.test(text)) reject(new ShardUnreadableError(this.name, key, "MinIO answered 500: its metadata of the object is damaged"));
            else reject(new Error(`${this.name}: GET ${key} answered HTTP ${res.statusCode} ${code}`));
          });
          res.on("error", reject);
          return;
        }
        const length = Number(res.headers["content-length"]);
        const body = Number.isInteger(length) ? Buffer.allocUnsafe(length) : undefined;
        const chunks: Buffer[] = [];
        let offset = 0;
        res.on("data", (chunk: Buffer) => {
          if (body && offset + chunk.length <= body.length) chunk.copy(body, offset);
          else chunks.push(chunk);
          offset += chunk.length;
        });
        res.on("end", () => {
          this.answered();
          if (body && offset === body.length && chunks.length === 0) resolve(body);
          else if (body && offset !== body.length) reject(new ShardUnreadableError(this.name, key, `the body ended after ${offset} of ${body.length} bytes`));
          else resolve(Buffer.concat(chunks));
        });
        // MinIO cuts the connection when a later block of the object fails its bitrot check.
        res.on("error", (err) => reject(new ShardUnreadableError(this.name, key, `the body was cut after ${offset} bytes (${err.message})`)));
      });
      req.on("error", (err) => reject(staleOr(req, err)));
      req.end();
    });
  }

  /** Every object under a prefix, with its last-modified time. */
  async list(prefix: string): Promise<{ key: string; modified: Date }[]> {
    const out: { key: string; modified: Date }[] = [];
    const stream = this.client.listObjectsV2(this.bucket, prefix, true);
    for await (const item of stream as AsyncIterable<{ name?: string; lastModified?: Date }>) {
      if (item.name) out.push({ key: item.name, modified: item.lastModified ?? new Date(0) });
    }
    return out;
  }

  async delete(key: string): Promise<void> {
    await this.withTimeout(`delete ${key}`, this.client.removeObject(this.bucket, key));
  }

  /** True when the node serves its identity object: it and its drive answer. */
  async answers(timeoutMs = 1000): Promise<boolean> {
    return this.withTimeout("identity", again(() => this.fetchObject(IDENTITY_KEY)), timeoutMs).then(() => true, () => false);
  }

  /**
   * Reads the node's identity object; updates `healthy`. A node that answers without one has a new
   * disk ("new-disk"): the caller records that durably first (queues the node's shards for
   * rebuilding) and only then calls adoptDisk(), so a crash in between is noticed again.
   */
  async probe(timeoutMs = 1000): Promise<ProbeResult> {
    try {
      await this.withTimeout("probe", again(() => this.fetchObject(IDENTITY_KEY)), timeoutMs);
      this.healthy = true;
      return "up";
    } catch (err) {
      if (err instanceof ShardMissingError) {
        this.healthy = true;
        return "new-disk";
      }
      // withTimeout kept a busy node healthy (it answered other requests while the probe waited).
      return this.healthy ? "up" : "down";
    }
  }

  /** Takes a new disk into use: its bucket is made again if needed and an identity written. */
  async adoptDisk(timeoutMs = 1000): Promise<void> {
    if (!(await this.withTimeout("bucket check", this.client.bucketExists(this.bucket), timeoutMs))) {
      await this.withTimeout("make bucket", this.client.makeBucket(this.bucket), this.timeoutMs);
    }
    await this.put(IDENTITY_KEY, [Buffer.from(JSON.stringify({ id: randomUUID(), since: new Date().toISOString() }))]);
  }

  private answered(): void {
    this.lastAnswer = performance.now();
  }

  /**
   * Races an exchange against its timeout. The timeout takes effect only after the I/O that is
   * already waiting has been read (setImmediate runs after the poll phase): when this process's
   * event loop was held up past the timeout, an answer that arrived meanwhile still counts.
   */
  private async withTimeout<T>(what: string, work: Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => setImmediate(() => reject(new TimeoutError(`${this.name}: ${what} timed out after ${timeoutMs} ms`))), timeoutMs);
    });
    work.catch(() => undefined);
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      const busy = err instanceof TimeoutError && this.lastAnswer >= started;
      if (!busy && !(err instanceof ShardMissingError) && !(err instanceof ShardUnreadableError) && isConnectionFailure(err)) this.healthy = false;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** An exchange with a node that did not finish within its time. */
class TimeoutError extends Error {}

/** A request that failed on a kept-alive socket the node had closed while it sat idle. */
class StaleSocketError extends Error {
  constructor(readonly original: Error) {
    super(original.message);
  }
}

function staleOr(req: http.ClientRequest, err: NodeJS.ErrnoException): Error {
  return req.reusedSocket && err.code === "ECONNRESET" ? new StaleSocketError(err) : err;
}

/**
 * Runs an exchange again once when it failed only because its reused socket had been closed by the
 * node (its idle timeout racing the reuse; Node's documented remedy). Shard PUTs and GETs are
 * idempotent, so a second try is safe even if the first reached the node. A reset on a fresh
 * socket, or on the second try, is the node's failure and is reported as such.
 */
async function again<T>(exchange: () => Promise<T>): Promise<T> {
  try {
    return await exchange();
  } catch (err) {
    if (!(err instanceof StaleSocketError)) throw err;
    try {
      return await exchange();
    } catch (second) {
      throw second instanceof StaleSocketError ? second.original : second;
    }
  }
}

function isConnectionFailure(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EPIPE" || err instanceof TimeoutError;
}
