#!/usr/bin/env node
/**
 * Blockserver benchmark against a running local cluster (bash ops/up.sh), all in one run:
 *  - block write and read throughput (PutBlock / GetBlock of 4 MiB blocks, 4 in flight) next to a
 *    plain MinIO client putObject / getObject of the same bytes to one node (also 4 in flight);
 *  - degraded read throughput with m nodes killed;
 *  - scrub rate (unthrottled pass) and the time to rebuild one dead node's shards;
 *  - foreground read p99 latency with and without a (rate-limited) scrub pass running.
 * It kills and restarts MinIO nodes of the cluster it measures.
 *   node ops/dist/bench/blocks.js [blocks=32]
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService, NodeState } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { loadClusterConfig } from "../config.js";
import { minioClient } from "../cluster/minio.js";
import { readClusterFile } from "../cluster/cluster.js";
import { NodeControl } from "../testing/node-control.js";

const BLOCK = 4 * 1024 * 1024;
const IN_FLIGHT = 4;

async function pool<T>(items: T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 32);
  const config = loadClusterConfig();
  const info = readClusterFile(config.stateDir);
  const transport = createSatchelTransport({ baseUrl: info.blockserver, token: info.serviceToken });
  const blocks = createClient(BlockService, transport);
  const admin = createClient(BlockAdminService, transport);
  const nodes = new NodeControl(config.stateDir, info);
  const data = Array.from({ length: count }, () => randomBytes(BLOCK));
  const hashes = data.map((d) => createHash("sha256").update(d).digest());
  const mb = (count * BLOCK) / 1e6;
  const timed = async (fn: () => Promise<void>) => {
    const t = performance.now();
    await fn();
    return mb / ((performance.now() - t) / 1000);
  };
  const idx = [...data.keys()];
  const verify = (i: number, got: Uint8Array) => {
    if (!createHash("sha256").update(got).digest().equals(hashes[i])) throw new Error(`block ${i} came back different`);
  };

  const write = await timed(() => pool(idx, (i) => blocks.putBlock({ hash: hashes[i], data: data[i] })));
  const read = await timed(() => pool(idx, async (i) => verify(i, (await blocks.getBlock({ hash: hashes[i] })).data)));
  const node = info.storageNodes[0];
  const s3 = minioClient(node);
  const prefix = `bench/${Date.now()}`;
  const minioPut = await timed(() => pool(idx, (i) => s3.putObject(node.bucket, `${prefix}/${i}`, data[i], BLOCK)));
  const minioGet = await timed(() => pool(idx, async (i) => {
    const chunks: Buffer[] = [];
    for await (const c of await s3.getObject(node.bucket, `${prefix}/${i}`)) chunks.push(c as Buffer);
    verify(i, Buffer.concat(chunks));
  }));
  await pool(idx, (i) => s3.removeObject(node.bucket, `${prefix}/${i}`));

  await nodes.kill(0);
  await nodes.kill(1);
  let degraded: number;
  try {
    degraded = await timed(() => pool(idx, async (i) => verify(i, (await blocks.getBlock({ hash: hashes[i] })).data)));
  } finally {
    await nodes.start(0);
    await nodes.start(1);
  }
  await new Promise((r) => setTimeout(r, 2000)); // let the blockserver's probe see them back

  // Foreground p99 of 1 MiB reads, alone and beside a rate-limited scrub pass.
  const small = Array.from({ length: 8 }, () => randomBytes(1024 * 1024));
  const smallHashes = small.map((d) => createHash("sha256").update(d).digest());
  await Promise.all(small.map((d, i) => blocks.putBlock({ hash: smallHashes[i], data: d })));
  const p99 = async (ms: number) => {
    const lat: number[] = [];
    const end = performance.now() + ms;
    for (let i = 0; performance.now() < end; i++) {
      const t = performance.now();
      await blocks.getBlock({ hash: smallHashes[i % small.length] });
      lat.push(performance.now() - t);
    }
    lat.sort((a, b) => a - b);
    return { p50: lat[Math.floor(lat.length * 0.5)], p99: lat[Math.floor(lat.length * 0.99)], n: lat.length };
  };
  const quiet = await p99(5000);
  void admin.runScrub({ wait: false, unthrottled: false });
  const busy = await p99(5000);
  const during = (await admin.getScrubStatus({})).status!;

  // Scrub rate: an unthrottled pass over everything (waits for the throttled one to end first).
  await admin.runScrub({ wait: true }, { timeoutMs: 3600_000 });
  const t0 = performance.now();
  const pass = (await admin.runScrub({ wait: true, unthrottled: true }, { timeoutMs: 3600_000 })).status!;
  const scrubSeconds = (performance.now() - t0) / 1000;

  // Rebuild one node: kill it, mark it dead, scrub; then bring it back.
  await nodes.kill(5);
  const t1 = performance.now();
  let rebuilt: bigint;
  try {
    await admin.setNodeState({ node: "minio-5", state: NodeState.DEAD });
    rebuilt = (await admin.runScrub({ wait: true, unthrottled: true }, { timeoutMs: 3600_000 })).status!.shardsRepaired;
  } finally {
    await admin.setNodeState({ node: "minio-5", state: NodeState.ACTIVE });
    await nodes.start(5);
  }
  const rebuildSeconds = (performance.now() - t1) / 1000;

  const r = (x: number) => x.toFixed(1);
  console.log(`${count} blocks of 4 MiB, ${IN_FLIGHT} in flight; MB = 10^6 bytes; erasure ${info.storageNodes.length} nodes`);
  console.log(`block write        ${r(write)} MB/s   minio putObject ${r(minioPut)} MB/s   ratio ${(write / minioPut).toFixed(2)}`);
  console.log(`block read         ${r(read)} MB/s   minio getObject ${r(minioGet)} MB/s   ratio ${(read / minioGet).toFixed(2)}`);
  console.log(`degraded read (2 nodes down) ${r(degraded)} MB/s   ratio to minio getObject ${(degraded / minioGet).toFixed(2)}, to healthy read ${(degraded / read).toFixed(2)}`);
  console.log(`scrub (unthrottled) ${Number(pass.blocksVerified)} blocks, ${r(Number(pass.bytesVerified) / 1e6)} MB in ${r(scrubSeconds)} s = ${r(Number(pass.bytesVerified) / 1e6 / scrubSeconds)} MB/s`);
  console.log(`scrub (throttled, limit ${r(Number(during.rateLimitBytesPerSecond) / 1e6)} MB/s) measured ${r(during.rateBytesPerSecond / 1e6)} MB/s`);
  console.log(`rebuild of minio-5: ${rebuilt} shards in ${r(rebuildSeconds)} s`);
  console.log(`foreground 1 MiB GetBlock: alone p50 ${r(quiet.p50)} ms p99 ${r(quiet.p99)} ms (${quiet.n}); beside scrub p50 ${r(busy.p50)} ms p99 ${r(busy.p99)} ms (${busy.n})`);
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
