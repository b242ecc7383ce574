import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import type * as https from "node:https";
import { join } from "node:path";
import * as Minio from "minio";
import { httpsAgent } from "@satchel/proto";
import type { CertFiles } from "./certs.js";
import { httpGet } from "./trust.js";
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
  creds: { accessKey: string; secretKey: string }, detached = false, tls?: CertFiles & { ca: string },
): Promise<MinioNode> {
  if (!existsSync(binary)) {
    throw new Error(`MinIO server binary not found at ${binary}; run "bash ops/install.sh" first`);
  }
  const dataDir = join(stateDir, `minio-${index}`, "data");
  mkdirSync(dataDir, { recursive: true });
  const name = `minio-${index}`;
  const args = ["server", dataDir, "--address", `${host}:${port}`, "--quiet"];
  if (tls) {
    // MinIO serves HTTPS when its certs directory holds public.crt and private.key.
    const certsDir = join(stateDir, name, "certs");
    mkdirSync(certsDir, { recursive: true, mode: 0o700 });
    copyFileSync(tls.cert, join(certsDir, "public.crt"));
    copyFileSync(tls.key, join(certsDir, "private.key"));
    args.push("--certs-dir", certsDir);
  }
  const proc = new ManagedProcess(name, stateDir, binary, args, {
    MINIO_ROOT_USER: creds.accessKey,
    MINIO_ROOT_PASSWORD: creds.secretKey,
    MINIO_BROWSER: "off",
    MINIO_UPDATE: "off",
    MINIO_CALLHOME_ENABLE: "off",
  }, detached);
  const node: MinioNode = { index, name, endpoint: `${tls ? "https" : "http"}://${host}:${port}`, port, ...creds, bucket: SHARD_BUCKET, process: proc };
  await restartMinioNode(node, tls && readFileSync(tls.ca));
  return node;
}

/**
 * Starts (or restarts) a node's process and waits until it serves requests; the bucket is created
 * once. `ca` (default: SATCHEL_TLS_CA's file) is trusted for an https node.
 */
export async function restartMinioNode(node: MinioNode, ca?: Buffer): Promise<void> {
  node.process.start();
  const client = minioClient(node, ca);
  await waitFor(`${node.name} on port ${node.port}`, 60_000, async () => {
    if (!node.process.running) throw new WaitAbortedError(`minio exited:\n${node.process.tail()}`);
    return (await liveness(node.endpoint, ca)) === 200;
  });
  await waitFor(`${node.name} bucket`, 30_000, async () => {
    if (!(await client.bucketExists(node.bucket))) await client.makeBucket(node.bucket);
    return true;
  });
}

/** The HTTP status of a node's liveness probe; `ca` (default: SATCHEL_TLS_CA's file) is trusted for an https node. */
export async function liveness(endpoint: string, ca?: Buffer): Promise<number> {
  return (await httpGet(`${endpoint}/minio/health/live`, ca, 5000)).status;
}

const agents = new Map<Buffer | undefined, https.Agent>();

/** One keep-alive HTTPS agent per trusted CA, shared by every client made here (tests make many). */
function sharedAgent(ca: Buffer | undefined): https.Agent {
  let agent = agents.get(ca);
  if (!agent) agents.set(ca, (agent = httpsAgent(ca, { keepAlive: true })));
  return agent;
}

/** An S3 client of a node; `ca` (default: SATCHEL_TLS_CA's file) is trusted for an https endpoint. */
export function minioClient(node: { endpoint: string; accessKey: string; secretKey: string }, ca?: Buffer): Minio.Client {
  const url = new URL(node.endpoint);
  const useSSL = url.protocol === "https:";
  return new Minio.Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL,
    ...(useSSL ? { transportAgent: sharedAgent(ca) } : {}),
    accessKey: node.accessKey,
    secretKey: node.secretKey,
  });
}
