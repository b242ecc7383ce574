import * as Minio from "minio";
import type { StorageNodeConfig } from "../config.js";

/** Thrown when a shard object is absent from its node. */
export class ShardMissingError extends Error {
  constructor(readonly node: string, readonly key: string) {
    super(`shard ${key} is missing on ${node}`);
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
  private readonly endpoint: string;
  /** False after a connection failure, until a health probe answers again. */
  healthy = true;

  constructor(config: StorageNodeConfig, private readonly timeoutMs: number) {
    const url = new URL(config.endpoint);
    this.name = config.name;
    this.bucket = config.bucket;
    this.endpoint = config.endpoint;
    this.client = new Minio.Client({
      endPoint: url.hostname,
      port: Number(url.port),
      useSSL: false,
      accessKey: config.accessKey,
      secretKey: config.secretKey,
    });
    // Sign requests with UNSIGNED-PAYLOAD: otherwise the client and MinIO each SHA-256 every shard
    // byte just for the S3 signature, doubling the hashing of a write on a 2-core machine. Shard
    // integrity is already guarded by the shard header's CRC-32 and the block's SHA-256.
    this.client.enableSHA256 = false;
  }

  async put(key: string, parts: Uint8Array[]): Promise<void> {
    const body = Buffer.concat(parts);
    await this.withTimeout(`put ${key}`, (async () => {
      // The plain PUT putObject would send, minus its Content-MD5 (see the constructor).
      const res = await this.client.makeRequestAsync({ method: "PUT", bucketName: this.bucket, objectName: key }, body, [200], "");
      for await (const _ of res as AsyncIterable<unknown>) {
        // drain the (empty) response so the connection is reused
      }
    })());
  }

  /** A shard object's bytes; timeoutMs lets a hedged read give up on a slow node early. */
  async get(key: string, timeoutMs?: number): Promise<Buffer> {
    return this.withTimeout(`get ${key}`, (async () => {
      let stream;
      try {
        stream = await this.client.getObject(this.bucket, key);
      } catch (err) {
        if ((err as { code?: string }).code === "NoSuchKey") throw new ShardMissingError(this.name, key);
        throw err;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    })(), timeoutMs);
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

  /** Asks the node's liveness endpoint; updates `healthy`. */
  async probe(timeoutMs = 1000): Promise<boolean> {
    try {
      const res = await fetch(`${this.endpoint}/minio/health/live`, { signal: AbortSignal.timeout(timeoutMs) });
      this.healthy = res.ok;
    } catch {
      this.healthy = false;
    }
    return this.healthy;
  }

  private async withTimeout<T>(what: string, work: Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name}: ${what} timed out after ${timeoutMs} ms`)), timeoutMs);
    });
    work.catch(() => undefined);
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      if (!(err instanceof ShardMissingError) && isConnectionFailure(err)) this.healthy = false;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}

function isConnectionFailure(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EPIPE" || /timed out/.test((err as Error).message ?? "");
}
