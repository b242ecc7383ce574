import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import * as Minio from "minio";
import { ManagedProcess, WaitAbortedError, waitFor } from "./process.js";

export const SHARD_BUCKET = "satchel-shards";

export interface MinioNode {
  index: number;
  name: string;
  endpoint: string;
  port: number;
  accessKey: string;
  secretKey: string;
  bucket: string;
  process: ManagedProcess;
}

/**
 * One MinIO server on a single drive: an independent failure domain. Satchel erasure-codes across
 * these nodes itself, so each node runs alone (no MinIO-level erasure set).
 */
export async function startMinioNode(
  stateDir: string, binary: string, index: number, host: string, port: number,
  creds: { accessKey: string; secretKey: string }, detached = false,
): Promise<MinioNode> {
  if (!existsSync(binary)) {
    throw new Error(`MinIO server binary not found at ${binary}; run "bash ops/install.sh" first`);
  }
  const dataDir = join(stateDir, `minio-${index}`, "data");
  mkdirSync(dataDir, { recursive: true });
  const name = `minio-${index}`;
  const proc = new ManagedProcess(name, stateDir, binary, ["server", dataDir, "--address", `${host}:${port}`, "--quiet"], {
    MINIO_ROOT_USER: creds.accessKey,
    MINIO_ROOT_PASSWORD: creds.secretKey,
    MINIO_BROWSER: "off",
    MINIO_UPDATE: "off",
    MINIO_CALLHOME_ENABLE: "off",
  }, detached);
  const node: MinioNode = { index, name, endpoint: `http://${host}:${port}`, port, ...creds, bucket: SHARD_BUCKET, process: proc };
  await restartMinioNode(node);
  return node;
}

/** Starts (or restarts) a node's process and waits until it serves requests; the bucket is created once. */
export async function restartMinioNode(node: MinioNode): Promise<void> {
  node.process.start();
  const client = minioClient(node);
  await waitFor(`${node.name} on port ${node.port}`, 60_000, async () => {
    if (!node.process.running) throw new WaitAbortedError(`minio exited:\n${node.process.tail()}`);
    const res = await fetch(`${node.endpoint}/minio/health/live`);
    return res.ok;
  });
  await waitFor(`${node.name} bucket`, 30_000, async () => {
    if (!(await client.bucketExists(node.bucket))) await client.makeBucket(node.bucket);
    return true;
  });
}

export function minioClient(node: { endpoint: string; accessKey: string; secretKey: string }): Minio.Client {
  const url = new URL(node.endpoint);
  return new Minio.Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: false,
    accessKey: node.accessKey,
    secretKey: node.secretKey,
  });
}
