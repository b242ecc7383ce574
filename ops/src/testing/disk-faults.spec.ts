import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as http from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as Minio from "minio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { minioClient, startMinioNode, SHARD_BUCKET, type MinioNode } from "../cluster/minio.js";
import { waitFor } from "../cluster/process.js";
import { loadClusterConfig } from "../config.js";
import {
  deleteShardData, deleteShardOnDisk, deleteShardViaS3, fileOffsetOf, flipBit, flipBitViaS3, MINIO_INLINE_MAX_BYTES,
  fillDrive, mountSmallDrives, nodeDataDir, releaseDrives, shardFiles, truncateShard, truncateShardMeta, wipeDisk, wipeDiskUnderRunningNode,
} from "./disk-faults.js";

// One standalone MinIO of the pinned version, on its own state directory and a free port: the
// answers asserted here are what the blockserver meets when the nemesis damages a node's drive.
const { minioBinary } = loadClusterConfig();
const MiB = 1024 * 1024;
const NODE = 0;

interface Answer {
  status: number;
  /** The S3 error code of an error body. */
  code?: string;
  body: Buffer;
  contentLength: number;
  /** Set when the server cut the connection before the announced length arrived. */
  cutError?: string;
}

let stateDir: string;
let node: MinioNode;
/** Whether the node runs on a small drive of its own (a tmpfs; mounting needs root). */
let smallDrive = false;
let objectCount = 0;

/** A client with its region fixed, so presigning never asks the node (a bucketless node would refuse). */
function s3(): Minio.Client {
  const url = new URL(node.endpoint);
  return new Minio.Client({
    endPoint: url.hostname, port: Number(url.port), useSSL: false, accessKey: node.accessKey, secretKey: node.secretKey, region: "us-east-1",
  });
}

/** A GET or HEAD of a presigned URL, read the way the blockserver's StorageNode reads a shard. */
async function request(key: string, method: "GET" | "HEAD" = "GET"): Promise<Answer> {
  const url = await s3().presignedUrl(method, SHARD_BUCKET, key, 60);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      const chunks: Buffer[] = [];
      let cutError: string | undefined;
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (err: NodeJS.ErrnoException) => (cutError = `${err.code} ${err.message}`));
      res.on("close", () => {
        const body = Buffer.concat(chunks);
        const code = res.statusCode !== 200 ? /<Code>(\w+)<\/Code>/.exec(body.toString("utf8"))?.[1] : undefined;
        resolve({ status: res.statusCode ?? 0, code, body, contentLength: Number(res.headers["content-length"]), cutError });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** A plain signed PUT, answering its status and S3 error code rather than retrying. */
async function put(key: string, body: Buffer): Promise<{ status: number; code?: string }> {
  const url = await s3().presignedPutObject(SHARD_BUCKET, key, 60);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "PUT", headers: { "content-length": body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, code: /<Code>(\w+)<\/Code>/.exec(Buffer.concat(chunks).toString("utf8"))?.[1] }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A fresh shard-like object of `size` random bytes, under a key shaped like a real shard's. */
async function storeShard(size: number): Promise<{ key: string; bytes: Buffer }> {
  const hash = randomBytes(32).toString("hex");
  const key = `blocks/${hash.slice(0, 2)}/${hash}.${objectCount++ % 6}`;
  const bytes = randomBytes(size);
  expect((await put(key, bytes)).status).toBe(200);
  return { key, bytes };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts the node's process without making its bucket. /minio/health/live answers 200 some
 * milliseconds before S3 requests stop failing with 503 XMinioServerNotInitialized;
 * /minio/health/cluster waits for that.
 */
async function startWithoutBucket(): Promise<void> {
  node.process.start();
  await waitFor("minio to serve S3 again", 30_000, async () => (await fetch(`${node.endpoint}/minio/health/cluster`)).ok);
}

describe.skipIf(!existsSync(minioBinary))(`disk faults on a MinIO node (binary ${minioBinary}; run "bash ops/install.sh" if skipped)`, () => {
  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), "satchel-disk-faults-"));
    // The nemesis's drives: every fault below is also shown on one, and it can fill up.
    smallDrive = mountSmallDrives(stateDir, 1, 128);
    const port = await freePort();
    node = await startMinioNode(stateDir, minioBinary, NODE, "127.0.0.1", port, { accessKey: "disk-faults", secretKey: randomBytes(18).toString("base64url") });
  });

  afterAll(async () => {
    await node?.process.stop();
    if (stateDir) releaseDrives(stateDir);
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    if (stateDir) expect(readFileSync("/proc/self/mounts", "utf8")).not.toContain(stateDir);
  });

  describe("layout", () => {
    it("an object of at most 128 KiB lives inline in xl.meta; a larger one in part.1 of its data dir", async () => {
      const inline = await storeShard(MINIO_INLINE_MAX_BYTES);
      const large = await storeShard(MINIO_INLINE_MAX_BYTES + 1);
      const i = shardFiles(stateDir, NODE, inline.key);
      const l = shardFiles(stateDir, NODE, large.key);
      expect(i).toMatchObject({ inline: true, objectLength: MINIO_INLINE_MAX_BYTES });
      expect(i.data).toBe(i.meta);
      expect(l).toMatchObject({ inline: false, objectLength: MINIO_INLINE_MAX_BYTES + 1 });
      expect(l.data).toMatch(/\/[0-9a-f-]{36}\/part\.1$/);
    });

    it("every object byte is on disk exactly where fileOffsetOf says, between the 32-byte block hashes", async () => {
      for (const size of [300, 3 * MiB + 100]) {
        const { key, bytes } = await storeShard(size);
        const files = shardFiles(stateDir, NODE, key);
        const file = readFileSync(files.data);
        const found = Buffer.alloc(size);
        for (let o = 0; o < size; o++) found[o] = file[fileOffsetOf(files, o)];
        expect(found.equals(bytes)).toBe(true);
      }
    });
  });

  describe("bit flips on disk are caught by MinIO's own bitrot check, never served", () => {
    it("a flipped bit in an inline object: GET 503 SlowDownRead, HEAD still 200; flipping it back heals it (nothing cached)", async () => {
      const { key, bytes } = await storeShard(300);
      expect((await request(key)).body.equals(bytes)).toBe(true);
      const flip = flipBit(stateDir, NODE, key, { objectOffset: 100, bit: 3 });
      expect(flip.file).toMatch(/xl\.meta$/);
      expect(await request(key)).toMatchObject({ status: 503, code: "SlowDownRead" });
      expect(await request(key, "HEAD")).toMatchObject({ status: 200, contentLength: 300 });
      flipBit(stateDir, NODE, key, { objectOffset: 100, bit: 3 });
      const healed = await request(key);
      expect(healed.status).toBe(200);
      expect(healed.body.equals(bytes)).toBe(true);
    });

    it("a flipped bit in the first 1 MiB block of a part file: GET 503 SlowDownRead before any byte", async () => {
      const { key } = await storeShard(2 * MiB);
      flipBit(stateDir, NODE, key, { objectOffset: MiB - 1, bit: 7 });
      expect(await request(key)).toMatchObject({ status: 503, code: "SlowDownRead" });
      expect((await request(key, "HEAD")).status).toBe(200);
    });

    it("a flipped bit in a later block: 200 and the full Content-Length, then the connection is cut after the intact blocks", async () => {
      const { key, bytes } = await storeShard(3 * MiB + 64);
      flipBit(stateDir, NODE, key, { objectOffset: 2 * MiB + 10 });
      const answer = await request(key);
      expect(answer.status).toBe(200);
      expect(answer.contentLength).toBe(bytes.length);
      expect(answer.cutError).toMatch(/ECONNRESET/);
      // What did arrive is the intact prefix (in practice exactly the two blocks before the flip).
      expect(answer.body.length).toBeLessThanOrEqual(2 * MiB);
      expect(answer.body.equals(bytes.subarray(0, answer.body.length))).toBe(true);
    });

    it("a seed picks the same bit every time, inside the object's bytes", async () => {
      const a = await storeShard(500 * 1024);
      const b = await storeShard(500 * 1024);
      const fa = flipBit(stateDir, NODE, a.key, { seed: "nemesis-7" });
      const fb = flipBit(stateDir, NODE, b.key, { seed: "nemesis-7" });
      expect({ objectOffset: fb.objectOffset, bit: fb.bit }).toEqual({ objectOffset: fa.objectOffset, bit: fa.bit });
      expect(fa.objectOffset).toBeLessThan(500 * 1024);
      expect(await request(a.key)).toMatchObject({ status: 503, code: "SlowDownRead" });
    });
  });

  describe("torn and lost files", () => {
    it("a truncated part file or inline data: GET 503 SlowDownRead, HEAD 200", async () => {
      for (const size of [300, 1000 * 1024, 3 * MiB + 10]) {
        const { key } = await storeShard(size);
        const cut = truncateShard(stateDir, NODE, key);
        expect(cut.toBytes).toBeLessThan(cut.fromBytes);
        expect(await request(key)).toMatchObject({ status: 503, code: "SlowDownRead" });
        expect((await request(key, "HEAD")).status).toBe(200);
      }
    });

    it("a truncated xl.meta: GET 500 InternalError naming the msgpack error, HEAD 500", async () => {
      for (const size of [300, 1000 * 1024]) {
        const { key } = await storeShard(size);
        truncateShardMeta(stateDir, NODE, key);
        const answer = await request(key);
        expect(answer).toMatchObject({ status: 500, code: "InternalError" });
        expect(answer.body.toString("utf8")).toMatch(/msgp/);
        expect((await request(key, "HEAD")).status).toBe(500);
      }
    });

    it("a lost data file under an intact xl.meta is not a 404: GET 503 SlowDownRead, HEAD 200", async () => {
      const { key } = await storeShard(1000 * 1024);
      deleteShardData(stateDir, NODE, key);
      expect(await request(key)).toMatchObject({ status: 503, code: "SlowDownRead" });
      expect((await request(key, "HEAD")).status).toBe(200);
      const inline = await storeShard(300);
      expect(() => deleteShardData(stateDir, NODE, inline.key)).toThrow(/inline/);
    });

    it("an object directory removed from the drive: GET and HEAD 404 NoSuchKey at once", async () => {
      for (const size of [300, 1000 * 1024]) {
        const { key } = await storeShard(size);
        expect((await request(key)).status).toBe(200);
        deleteShardOnDisk(stateDir, NODE, key);
        expect(await request(key)).toMatchObject({ status: 404, code: "NoSuchKey" });
        expect((await request(key, "HEAD")).status).toBe(404);
      }
    });
  });

  describe("faults through S3", () => {
    it("an object deleted through S3: GET and HEAD 404 NoSuchKey", async () => {
      const { key } = await storeShard(1000);
      await deleteShardViaS3(node, key);
      expect(await request(key)).toMatchObject({ status: 404, code: "NoSuchKey" });
      expect((await request(key, "HEAD")).status).toBe(404);
    });

    it("a bit flipped through S3 is served with a 200: silent corruption only the shard CRC catches", async () => {
      for (const size of [300, 2 * MiB]) {
        const { key, bytes } = await storeShard(size);
        const flip = await flipBitViaS3(node, key, { objectOffset: 70, bit: 1 });
        const answer = await request(key);
        expect(answer.status).toBe(200);
        const expected = Buffer.from(bytes);
        expected[flip.objectOffset] ^= 1 << flip.bit;
        expect(answer.body.equals(expected)).toBe(true);
      }
    });
  });

  describe("a drive that fills up", () => {
    it("refuses writes while it is full (507 XMinioStorageFull once MinIO sees it), still serves reads, and takes writes again once space is freed", async () => {
      expect(smallDrive, "the node's drive must be a tmpfs of its own (mounting one needs root)").toBe(true);
      const stored = await storeShard(MINIO_INLINE_MAX_BYTES + 1000);
      const write = () => put(`blocks/full/${randomBytes(8).toString("hex")}.0`, randomBytes(MINIO_INLINE_MAX_BYTES + 1000));
      const full = fillDrive(stateDir, NODE)!;
      try {
        expect(full.bytes).toBeGreaterThan(0);
        const answers = new Set<string>();
        await waitFor("MinIO to see its drive full", 10_000, async () => {
          const answer = await write();
          answers.add(`${answer.status} ${answer.code}`);
          return answer.status === 507;
        });
        // Before that, a write may also fail as the drive runs out under it (500, or 400 IncompleteBody
        // when MinIO gives up before reading the body): never a 200.
        expect([...answers].filter((a) => a.startsWith("2"))).toEqual([]);
        const read = await request(stored.key);
        expect(read.status).toBe(200);
        expect(read.body.equals(stored.bytes)).toBe(true);
        expect((await fetch(`${node.endpoint}/minio/health/live`)).status).toBe(200);
      } finally {
        full.free();
      }
      await waitFor("MinIO to take writes again", 20_000, async () => (await write()).status === 200);
    });
  });

  // These two run last: they take the whole drive.
  describe("wiped drives", () => {
    it("wipeDisk refuses a running node; wiped while stopped, the node starts bucketless: GET and PUT 404 NoSuchBucket", async () => {
      const { key } = await storeShard(1000);
      expect(() => wipeDisk(stateDir, NODE)).toThrow(/running/);
      await node.process.stop();
      wipeDisk(stateDir, NODE);
      expect(readdirSync(nodeDataDir(stateDir, NODE))).toEqual([]);

      await startWithoutBucket();
      expect(await request(key)).toMatchObject({ status: 404, code: "NoSuchBucket" });
      expect((await request(key, "HEAD")).status).toBe(404);
      expect(await put(key, randomBytes(10))).toEqual({ status: 404, code: "NoSuchBucket" });
      expect(await minioClient(node).bucketExists(SHARD_BUCKET)).toBe(false);

      // What restartMinioNode (and so NodeControl.start) does next: the bucket is back, empty.
      await minioClient(node).makeBucket(SHARD_BUCKET);
      expect(await request(key)).toMatchObject({ status: 404, code: "NoSuchKey" });
    });

    it("a drive wiped under a running node may answer 404 NoSuchBucket, then 503 SlowDownRead once MinIO takes it offline; liveness stays 200", async () => {
      const { key } = await storeShard(1000);
      wipeDiskUnderRunningNode(stateDir, NODE);
      const seen = new Set<string>();
      await waitFor("MinIO to take the wiped drive offline", 20_000, async () => {
        const answer = await request(key);
        seen.add(`${answer.status} ${answer.code}`);
        return answer.status === 503;
      });
      expect([...seen].filter((s) => s !== "404 NoSuchBucket" && s !== "503 SlowDownRead")).toEqual([]);
      expect(await put(key, randomBytes(10))).toEqual({ status: 503, code: "SlowDownWrite" });
      expect((await request(key, "HEAD")).status).toBe(503);
      expect((await fetch(`${node.endpoint}/minio/health/live`)).status).toBe(200);
    });
  });
});
