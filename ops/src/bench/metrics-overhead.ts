#!/usr/bin/env node
/**
 * What the RPC metrics interceptor costs: two extra blockservers on the running local cluster
 * (bash ops/up.sh), one with the interceptor and one started with SATCHEL_RPC_METRICS=off, driven
 * alternately in the same run: 4 MiB block writes (4 in flight) and small HasBlocks calls
 * (8 in flight), reporting throughput of each and the ratio.
 *   node ops/dist/bench/metrics-overhead.js [rounds=4] [blocks per round=8] [calls per round=1000]
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { readClusterFile, waitServing, type ClusterEndpoints } from "../cluster/cluster.js";
import { ManagedProcess } from "../cluster/process.js";
import { REPO_ROOT, loadClusterConfig } from "../config.js";
import { serviceEnv } from "../testing/service-process.js";

const BLOCK = 4 * 1024 * 1024;

async function pool(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) await fn(next++);
  }));
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 4);
  const perRound = Number(process.argv[3] ?? 8);
  const calls = Number(process.argv[4] ?? 1000);
  const config = loadClusterConfig();
  const e = readClusterFile(config.stateDir);
  const base = Number(new URL(e.blockserver).port) + 60;
  const variants: { name: string; proc: ManagedProcess; client: Client<typeof BlockService>; mb: number; s: number; calls: number; callS: number }[] = [];
  for (const [i, metrics] of ["on", "off"].entries()) {
    const port = base + i * 2;
    const proc = new ManagedProcess(`bench-blockserver-${metrics}`, config.stateDir, process.execPath, [join(REPO_ROOT, "blockserver", "dist", "bin.js")], {
      ...serviceEnv(e, "blockserver", port),
      SATCHEL_SCRUB_IDLE_MS: "3600000",
      SATCHEL_RPC_METRICS: metrics,
    });
    proc.start();
    const url = `${new URL(e.blockserver).protocol}//127.0.0.1:${port}`;
    await waitServing(proc.name, url, proc);
    variants.push({ name: i === 0 ? "with metrics" : "without metrics", proc, client: createClient(BlockService, createSatchelTransport({ baseUrl: url, token: e.serviceToken })), mb: 0, s: 0, calls: 0, callS: 0 });
  }
  try {
    const probe = createHash("sha256").update(randomBytes(8)).digest();
    for (let r = 0; r < rounds; r++) {
      // Alternate the order each round, so neither variant always runs first.
      for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
        const data = Array.from({ length: perRound }, () => randomBytes(BLOCK));
        let t = performance.now();
        await pool(perRound, 4, (i) => v.client.putBlock({ hash: createHash("sha256").update(data[i]).digest(), data: data[i] }));
        v.s += (performance.now() - t) / 1000;
        v.mb += (perRound * BLOCK) / 1e6;
        t = performance.now();
        await pool(calls, 8, () => v.client.hasBlocks({ hashes: [probe] }));
        v.callS += (performance.now() - t) / 1000;
        v.calls += calls;
      }
    }
    for (const v of variants) console.log(`${v.name.padEnd(16)} block writes ${(v.mb / v.s).toFixed(1)} MB/s, HasBlocks ${(v.calls / v.callS).toFixed(0)} calls/s`);
    const [w, wo] = variants;
    console.log(`with/without: block writes ${((w.mb / w.s) / (wo.mb / wo.s)).toFixed(3)}, small calls ${((w.calls / w.callS) / (wo.calls / wo.callS)).toFixed(3)}`);
  } finally {
    for (const v of variants) await v.proc.stop(5000);
  }
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
