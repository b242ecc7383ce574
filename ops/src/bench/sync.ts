#!/usr/bin/env node
/**
 * Sync latency benchmark against a running local cluster (bash ops/up.sh): two running sync
 * agents (file watcher + notifyserver stream) on two folders of one fresh account; for each size,
 * write a random file into A's folder (written beside it, then renamed in) and time until B's copy
 * is byte-identical. Prints p50/p99 per size.
 *   node ops/dist/bench/sync.js [sizes KiB=1,1024,10240] [files per size=20]
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SatchelClient, SyncAgent } from "@satchel/client-sdk";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { loadClusterConfig } from "../config.js";
import { createAccount } from "../testing/accounts.js";

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function main(): Promise<void> {
  const sizes = (process.argv[2] ?? "1,1024,10240").split(",").map(Number);
  const count = Number(process.argv[3] ?? 20);
  const config = loadClusterConfig();
  const endpoints = JSON.parse(readFileSync(join(config.stateDir, "cluster.json"), "utf8")) as ClusterEndpoints;
  const account = await createAccount(endpoints, "syncbench");
  const agents: SyncAgent[] = [];
  const folders: string[] = [];
  for (const device of ["a", "b"]) {
    const folder = mkdtempSync(join(tmpdir(), `satchel-sync-bench-${device}-`));
    const client = new SatchelClient({ metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver, credentials: { ...account, deviceName: device } });
    const agent = new SyncAgent(client, folder, { notifyserverUrl: endpoints.notifyserver, notifyToken: client.session?.accessToken });
    await agent.start();
    agents.push(agent);
    folders.push(folder);
  }
  const [a, b] = folders;
  for (const kib of sizes) {
    const latencies: number[] = [];
    for (let i = 0; i < count; i++) {
      const data = randomBytes(kib * 1024);
      const want = sha(data);
      const name = `f-${kib}k-${i}.bin`;
      await writeFile(join(a, `.${name}.tmp`), data);
      const started = performance.now();
      await rename(join(a, `.${name}.tmp`), join(a, name));
      const deadline = started + 60_000;
      for (;;) {
        const got = await readFile(join(b, name)).catch(() => undefined);
        if (got && sha(got) === want) break;
        if (performance.now() > deadline) throw new Error(`${name} did not reach B within 60 s`);
        await new Promise((r) => setTimeout(r, 5));
      }
      latencies.push(performance.now() - started);
    }
    latencies.sort((x, y) => x - y);
    console.log(`${String(kib).padStart(6)} KiB: sync latency A -> B p50 ${percentile(latencies, 0.5).toFixed(0)} ms, p99 ${percentile(latencies, 0.99).toFixed(0)} ms (${count} files)`);
  }
  for (const agent of agents) await agent.stop();
  for (const f of folders) rmSync(f, { recursive: true, force: true });
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
