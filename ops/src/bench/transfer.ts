#!/usr/bin/env node
/**
 * Benchmark for the foundation slice, against a running local cluster (bash ops/up.sh):
 * `satchel put` / `satchel get` of one random file (100 MiB by default) next to a plain MinIO
 * client putObject / getObject of the same file to one MinIO node, in the same run, plus the
 * cluster's idle memory and start time.
 *   node ops/dist/bench/transfer.js [size-MiB] [rounds]
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadClusterConfig } from "../config.js";
import { minioClient } from "../cluster/minio.js";
import { readClusterFile } from "../cluster/cluster.js";
import { runCliPeakRss } from "../testing/cli.js";
import { figureLine } from "./figures.js";


async function main(): Promise<void> {
  const sizeMiB = Number(process.argv[2] ?? 100);
  const rounds = Number(process.argv[3] ?? 3);
  const config = loadClusterConfig();
  const info = readClusterFile(config.stateDir);
  const idleRss = clusterRss(config.stateDir);
  const dir = mkdtempSync(join(tmpdir(), "satchel-bench-"));
  const file = join(dir, "in.bin");
  const size = sizeMiB * 1024 * 1024;
  writeFileSync(file, randomBytes(size));
  const expected = createHash("sha256").update(readFileSync(file)).digest("hex");
  const env = { ...process.env, SATCHEL_STATE_DIR: config.stateDir };
  const node = info.storageNodes[0];
  const s3 = minioClient(node);
  const mbps = (ms: number) => size / 1e6 / (ms / 1000);
  // The CLI's peak resident memory, the most any round needed (its memory must not grow with the file).
  const peak = { put: 0, get: 0 };
  const cliOk = async (args: string[]) => {
    const r = await runCliPeakRss(args, env);
    if (r.code !== 0) throw new Error(`satchel ${args[0]} failed: ${r.stderr}`);
    return r;
  };
  const rows: Record<string, number[]> = { "satchel put": [], "satchel get": [], "minio putObject": [], "minio getObject": [] };
  const time = async (name: string, fn: () => Promise<unknown>) => {
    const t = performance.now();
    await fn();
    rows[name].push(mbps(performance.now() - t));
  };
  for (let r = 0; r < rounds; r++) {
    // Fresh content each round, so Satchel cannot deduplicate against the previous round.
    writeFileSync(file, randomBytes(size));
    const digest = createHash("sha256").update(readFileSync(file)).digest("hex");
    const remote = `/bench/transfer-${Date.now()}-${r}.bin`;
    await time("satchel put", async () => (peak.put = Math.max(peak.put, (await cliOk(["put", file, remote])).peakRssMiB)));
    await time("satchel get", async () => (peak.get = Math.max(peak.get, (await cliOk(["get", remote, join(dir, "out.bin")])).peakRssMiB)));
    if (createHash("sha256").update(readFileSync(join(dir, "out.bin"))).digest("hex") !== digest) throw new Error("satchel get returned different bytes");
    const key = `bench/${Date.now()}-${r}`;
    await time("minio putObject", () => s3.putObject(node.bucket, key, createReadStream(file), size));
    await time("minio getObject", async () => {
      const hash = createHash("sha256");
      for await (const c of await s3.getObject(node.bucket, key)) hash.update(c as Buffer);
      if (hash.digest("hex") !== digest) throw new Error("minio returned different bytes");
    });
    await s3.removeObject(node.bucket, key);
  }
  void expected;
  rmSync(dir, { recursive: true, force: true });
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`file ${sizeMiB} MiB, ${rounds} rounds, median MB/s (1 MB = 10^6 bytes)`);
  for (const [name, xs] of Object.entries(rows)) console.log(`${name.padEnd(16)} ${median(xs).toFixed(1).padStart(8)} MB/s   (${xs.map((x) => x.toFixed(0)).join(", ")})`);
  console.log(figureLine("satchel", "put_MBps", median(rows["satchel put"]), "MB/s"));
  console.log(figureLine("minio", "put_MBps", median(rows["minio putObject"]), "MB/s"));
  console.log(figureLine("satchel", "get_MBps", median(rows["satchel get"]), "MB/s"));
  console.log(figureLine("minio", "get_MBps", median(rows["minio getObject"]), "MB/s"));
  console.log(figureLine("satchel", "put_peak_rss_MiB", peak.put, "MiB"));
  console.log(figureLine("satchel", "get_peak_rss_MiB", peak.get, "MiB"));
  console.log(`put ratio satchel/minio ${(median(rows["satchel put"]) / median(rows["minio putObject"])).toFixed(2)}`);
  console.log(`get ratio satchel/minio ${(median(rows["satchel get"]) / median(rows["minio getObject"])).toFixed(2)}`);
  console.log(`cluster idle RSS ${(idleRss / 1024 / 1024).toFixed(0)} MiB; start time ${(info.startMs / 1000).toFixed(1)} s`);
}

/** Sum of resident memory of every process the cluster started (from its pid files). */
export function clusterRss(stateDir: string): number {
  let total = 0;
  for (const f of readdirSync(join(stateDir, "run"))) {
    const pid = readFileSync(join(stateDir, "run", f), "utf8").trim();
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const kb = /VmRSS:\s+(\d+) kB/.exec(status);
      if (kb) total += Number(kb[1]) * 1024;
    } catch {
      // process gone
    }
  }
  return total;
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
