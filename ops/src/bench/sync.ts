#!/usr/bin/env node
/**
 * Sync latency benchmark against a running local cluster (bash ops/up.sh): two running sync
 * agents (file watcher + notifyserver stream) on two folders of one fresh account; for each size,
 * write a random file into A's folder (written beside it, then renamed in) and time until B's copy
 * is byte-identical. Prints p50/p99 per size.
 *   node ops/dist/bench/sync.js [sizes KiB=1,1024,10240] [files per size=20]
 * With "peers" as the first argument it runs the scenarios of ../shared/peers/syncthing-pair.sh
 * instead (same environment variables SMALL_FILES, SMALL_DIRS, BIG_MB, INSERT_MB): many small
 * files (files/s), one big file (MB/s), 1 MiB overwritten inside it and 10 bytes inserted at the
 * start of an INSERT_MB file (seconds, and bytes B fetched from the blockserver).
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { mkdir, open, readFile, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SatchelClient, SyncAgent } from "@satchel/client-sdk";
import { readClusterFile, type ClusterEndpoints } from "../cluster/cluster.js";
import { loadClusterConfig } from "../config.js";
import { createAccount } from "../testing/accounts.js";
import { figureLine } from "./figures.js";

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function startPair(endpoints: ClusterEndpoints, onDownload: (bytes: number) => void, onUpload: () => void = () => undefined) {
  const account = await createAccount(endpoints, "syncbench");
  const agents: SyncAgent[] = [];
  const folders: string[] = [];
  for (const device of ["a", "b"]) {
    const folder = mkdtempSync(join(tmpdir(), `satchel-sync-bench-${device}-`));
    const client = new SatchelClient({ metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver, credentials: { ...account, deviceName: device } });
    const agent = new SyncAgent(client, folder, {
      notifyserverUrl: endpoints.notifyserver, notifyToken: client.session?.accessToken,
      onEvent: (e) => {
        if (device === "b" && e.kind === "download") onDownload(e.bytes ?? 0);
        if (device === "a" && e.kind === "upload") onUpload();
      },
    });
    await agent.start();
    agents.push(agent);
    folders.push(folder);
  }
  return {
    a: folders[0], b: folders[1],
    stop: async () => {
      for (const agent of agents) await agent.stop();
      for (const f of folders) rmSync(f, { recursive: true, force: true });
    },
  };
}

/** Waits until every file of `want` (relative path -> sha256) is on B with that content. */
async function until(b: string, want: Map<string, string>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const left = new Map(want);
  while (left.size > 0) {
    for (const [rel, hash] of [...left]) {
      const got = await readFile(join(b, rel)).catch(() => undefined);
      if (got && sha(got) === hash) left.delete(rel);
    }
    if (left.size === 0) break;
    if (performance.now() > deadline) throw new Error(`${left.size} files did not reach B within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function latencies(endpoints: ClusterEndpoints, sizes: number[], count: number): Promise<void> {
  const pair = await startPair(endpoints, () => undefined);
  for (const kib of sizes) {
    const times: number[] = [];
    for (let i = 0; i < count; i++) {
      const data = randomBytes(kib * 1024);
      const name = `f-${kib}k-${i}.bin`;
      await writeFile(join(pair.a, `.${name}.tmp`), data);
      const started = performance.now();
      await rename(join(pair.a, `.${name}.tmp`), join(pair.a, name));
      await until(pair.b, new Map([[name, sha(data)]]), 60_000);
      times.push(performance.now() - started);
    }
    times.sort((x, y) => x - y);
    console.log(figureLine("satchel", `sync_latency_${kib}KiB_p50_ms`, percentile(times, 0.5), "ms"));
    console.log(figureLine("satchel", `sync_latency_${kib}KiB_p99_ms`, percentile(times, 0.99), "ms"));
    console.log(`${String(kib).padStart(6)} KiB: sync latency A -> B p50 ${percentile(times, 0.5).toFixed(0)} ms, p99 ${percentile(times, 0.99).toFixed(0)} ms (${count} files)`);
  }
  await pair.stop();
}

/** The peers harness's scenarios, timed the same way: from the write on A until B has it all. */
async function peers(endpoints: ClusterEndpoints): Promise<void> {
  const small = Number(process.env.SMALL_FILES ?? 10000);
  const dirs = Number(process.env.SMALL_DIRS ?? 100);
  const bigMb = Number(process.env.BIG_MB ?? 1024);
  const insertMb = Number(process.env.INSERT_MB ?? 100);
  let fetched = 0;
  let uploads = 0;
  let uploadedAt = 0;
  const pair = await startPair(endpoints, (bytes) => (fetched += bytes), () => {
    if (++uploads === small) uploadedAt = performance.now();
  });
  const stage = mkdtempSync(join(pair.a, "..", "satchel-stage-"));
  const out = (metric: string, value: number, unit: string) => console.log(figureLine("satchel", metric, value, unit));

  // a. many small files, built outside, renamed in as one folder
  const want = new Map<string, string>();
  await mkdir(join(stage, "small"));
  for (let d = 0; d < dirs; d++) await mkdir(join(stage, "small", `d${d}`));
  for (let i = 0; i < small; i++) {
    const data = randomBytes(4096);
    const rel = join("small", `d${i % dirs}`, `f${i}.bin`);
    await writeFile(join(stage, rel), data);
    want.set(rel, sha(data));
  }
  let t = performance.now();
  await rename(join(stage, "small"), join(pair.a, "small"));
  await until(pair.b, want, 900_000);
  out("small_files_per_s", small / ((performance.now() - t) / 1000), "files/s");
  // Where the time went: A's uploads (scan, PutBlock, CommitBatch) and then B's catch-up.
  console.log(`  small files: A uploaded all ${small} after ${uploadedAt ? ((uploadedAt - t) / 1000).toFixed(1) : "?"} s, B had them all after ${((performance.now() - t) / 1000).toFixed(1)} s`);

  // b. one big file
  const big = randomBytes(bigMb * 1024 * 1024);
  await writeFile(join(stage, "big.bin"), big);
  t = performance.now();
  await rename(join(stage, "big.bin"), join(pair.a, "big.bin"));
  await until(pair.b, new Map([["big.bin", sha(big)]]), 900_000);
  out("big_file_mb_per_s", big.length / 1e6 / ((performance.now() - t) / 1000), "MB/s");

  // c. 1 MiB overwritten in place in the middle of the big file
  const patch = randomBytes(1024 * 1024);
  patch.copy(big, Math.floor(big.length / 2));
  fetched = 0;
  t = performance.now();
  const h = await open(join(pair.a, "big.bin"), "r+");
  await h.write(patch, 0, patch.length, Math.floor(big.length / 2));
  await h.close();
  await until(pair.b, new Map([["big.bin", sha(big)]]), 900_000);
  out("delta_overwrite_time", (performance.now() - t) / 1000, "s");
  out("delta_overwrite_rx_bytes", fetched, "bytes");

  // d. 10 bytes inserted at the start of an INSERT_MB file
  const base = randomBytes(insertMb * 1024 * 1024);
  await writeFile(join(stage, "insert.bin"), base);
  await rename(join(stage, "insert.bin"), join(pair.a, "insert.bin"));
  await until(pair.b, new Map([["insert.bin", sha(base)]]), 900_000);
  const edited = Buffer.concat([randomBytes(10), base]);
  await writeFile(join(stage, "insert.bin"), edited);
  fetched = 0;
  t = performance.now();
  await rename(join(stage, "insert.bin"), join(pair.a, "insert.bin"));
  await until(pair.b, new Map([["insert.bin", sha(edited)]]), 900_000);
  out("delta_insert_time", (performance.now() - t) / 1000, "s");
  out("delta_insert_rx_bytes", fetched, "bytes");

  rmSync(stage, { recursive: true, force: true });
  await pair.stop();
}

async function main(): Promise<void> {
  const config = loadClusterConfig();
  const endpoints = readClusterFile(config.stateDir);
  if (process.argv[2] === "peers") await peers(endpoints);
  else await latencies(endpoints, (process.argv[2] ?? "1,1024,10240").split(",").map(Number), Number(process.argv[3] ?? 20));
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
