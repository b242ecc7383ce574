#!/usr/bin/env node
/**
 * `npm run bench [-- scenario…] [--runs N] [--smoke] [--use-running] [--out DIR]`: every figure of
 * the platform beside its peer's, measured in the same run on the same machine (it is shared and
 * noisy, so only ratios within one run mean anything), each scenario run N times (default 3).
 *   transfer  satchel put/get of one file vs a plain MinIO client's putObject/getObject
 *   commits   CommitFile (one block; empty) at 1, 8, 64 clients vs raw mysql2 transactions
 *   notify    Subscribe fan-out latency at 1,000 and 10,000 streams
 *   sync      two sync agents vs two Syncthing instances (../shared/peers/syncthing-pair.sh, which
 *             also times restic): many small files, one large file, a 1 MiB overwrite, a 10-byte insert
 *   latency   one file written on A until byte-identical on B, by size
 * It starts a cluster of its own (.satchel/bench, ports from 26300) unless --use-running (the one
 * in SATCHEL_STATE_DIR), writes ops/bench/results/<date>.json and .md, and puts the table in
 * README between its markers. --smoke: tiny sizes and one run, into --out (CI runs it so the
 * command never rots; its figures mean nothing).
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { BUSY_CLIENT_LIMITS, REPO_ROOT, loadClusterConfig } from "../config.js";
import { startCluster } from "../cluster/cluster.js";
import { killLeftovers } from "../cluster/process.js";
import { parseFigures, renderTable, replaceBetween, tabulate, type Comparison, type Figure } from "./figures.js";

/** One process a scenario runs: a node script of ops/dist/bench, or the peers harness. */
interface Step {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

interface Scenario {
  /** What one run of it executes, Satchel's side and the peer's, one after the other. */
  steps(smoke: boolean): Step[];
  /** The rows it makes, at the sizes it ran at. */
  comparisons(smoke: boolean): Comparison[];
}

const bench = (script: string, ...args: string[]): Step => ({ command: process.execPath, args: [join(REPO_ROOT, "ops", "dist", "bench", script), ...args] });
const PEERS = join(REPO_ROOT, "..", "shared", "peers", "syncthing-pair.sh");
const LEVELS = { full: [1, 8, 64], smoke: [1, 8] };
const STREAMS = { full: [1000, 10000], smoke: [100] };
const LATENCY_KIB = { full: [1, 1024, 10240], smoke: [1] };

/** The sync scenarios' sizes, shared by both sides so they do the same work. */
const syncSizes = (smoke: boolean): Record<string, string> =>
  smoke ? { SMALL_FILES: "40", SMALL_DIRS: "4", BIG_MB: "4", INSERT_MB: "4" } : { SMALL_FILES: "2000", SMALL_DIRS: "20", BIG_MB: "256", INSERT_MB: "100" };

const commitRows = (levels: number[]): Comparison[] => levels.flatMap((n) => [
  { scenario: "commits", label: `one-block CommitFile, ${n} client${n > 1 ? "s" : ""}`, satchel: `satchel.commit_1block_c${n}_per_s`, peer: `mysql2.txn_c${n}_per_s`, higherIsBetter: true },
  { scenario: "commits", label: `empty-file CommitFile, ${n} client${n > 1 ? "s" : ""}`, satchel: `satchel.commit_empty_c${n}_per_s`, peer: `mysql2.txn_c${n}_per_s`, higherIsBetter: true },
  { scenario: "commits", label: `one-block CommitFile p99, ${n} client${n > 1 ? "s" : ""}`, satchel: `satchel.commit_1block_c${n}_p99_ms`, peer: `mysql2.txn_c${n}_p99_ms`, higherIsBetter: false },
  { scenario: "commits", label: `files committed by CommitBatch of 100, ${n} client${n > 1 ? "s" : ""}`, satchel: `satchel.batch_files_c${n}_per_s`, peer: `mysql2.txn_c${n}_per_s`, higherIsBetter: true },
]);

export const SCENARIOS: Record<string, Scenario> = {
  transfer: {
    steps: (smoke) => [bench("transfer.js", smoke ? "4" : "100", "1")],
    comparisons: () => [
      { scenario: "transfer", label: "put of one file", satchel: "satchel.put_MBps", peer: "minio.put_MBps", higherIsBetter: true },
      { scenario: "transfer", label: "get of one file", satchel: "satchel.get_MBps", peer: "minio.get_MBps", higherIsBetter: true },
      { scenario: "transfer", label: "satchel put: client peak RSS", satchel: "satchel.put_peak_rss_MiB", higherIsBetter: false },
      { scenario: "transfer", label: "satchel get: client peak RSS", satchel: "satchel.get_peak_rss_MiB", higherIsBetter: false },
    ],
  },
  commits: {
    steps: (smoke) => [bench("commits.js", smoke ? "1" : "5", (smoke ? LEVELS.smoke : LEVELS.full).join(","))],
    comparisons: (smoke) => commitRows(smoke ? LEVELS.smoke : LEVELS.full),
  },
  notify: {
    steps: (smoke) => [bench("notify.js", (smoke ? STREAMS.smoke : STREAMS.full).join(","), smoke ? "100" : "5000", smoke ? "1" : "5")],
    comparisons: (smoke) => (smoke ? STREAMS.smoke : STREAMS.full).map((n) => (
      { scenario: "notify", label: `fan-out p99, ${n} streams`, satchel: `satchel.notify_${n}_streams_p99_ms`, higherIsBetter: false }
    )),
  },
  sync: {
    steps: (smoke) => [
      { ...bench("sync.js", "peers"), env: syncSizes(smoke) },
      { command: "bash", args: [PEERS], env: { ...syncSizes(smoke), TIMEOUT_S: smoke ? "120" : "900" } },
    ],
    comparisons: () => [
      { scenario: "sync", label: "small files (4 KiB) A -> B", satchel: "satchel.small_files_per_s", peer: "syncthing.small_files_per_s", higherIsBetter: true },
      { scenario: "sync", label: "one large file A -> B", satchel: "satchel.big_file_mb_per_s", peer: "syncthing.big_file_mb_per_s", higherIsBetter: true },
      { scenario: "sync", label: "one large file, vs restic backup", satchel: "satchel.big_file_mb_per_s", peer: "restic.backup1_mb_per_s", higherIsBetter: true },
      { scenario: "sync", label: "1 MiB overwritten in place", satchel: "satchel.delta_overwrite_time", peer: "syncthing.delta_overwrite_time", higherIsBetter: false },
      { scenario: "sync", label: "1 MiB overwritten: bytes B fetched", satchel: "satchel.delta_overwrite_rx_bytes", peer: "syncthing.delta_overwrite_rx_bytes", higherIsBetter: false },
      { scenario: "sync", label: "10 bytes inserted at the start", satchel: "satchel.delta_insert_time", peer: "syncthing.delta_insert_time", higherIsBetter: false },
      { scenario: "sync", label: "10 bytes inserted: bytes B fetched", satchel: "satchel.delta_insert_rx_bytes", peer: "syncthing.delta_insert_rx_bytes", higherIsBetter: false },
    ],
  },
  latency: {
    steps: (smoke) => [bench("sync.js", (smoke ? LATENCY_KIB.smoke : LATENCY_KIB.full).join(","), smoke ? "3" : "20")],
    comparisons: (smoke) => (smoke ? LATENCY_KIB.smoke : LATENCY_KIB.full).flatMap((kib) => [
      { scenario: "latency", label: `sync latency p50, ${kib} KiB`, satchel: `satchel.sync_latency_${kib}KiB_p50_ms`, higherIsBetter: false },
      { scenario: "latency", label: `sync latency p99, ${kib} KiB`, satchel: `satchel.sync_latency_${kib}KiB_p99_ms`, higherIsBetter: false },
    ]),
  },
};

export interface BenchOptions {
  scenarios: string[];
  runs: number;
  smoke: boolean;
  useRunning: boolean;
  out: string;
}

export function parseArgs(argv: string[]): BenchOptions {
  const opts: BenchOptions = { scenarios: [], runs: 3, smoke: false, useRunning: false, out: join(REPO_ROOT, "ops", "bench", "results") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--smoke") opts.smoke = true;
    else if (a === "--use-running") opts.useRunning = true;
    else if (a === "--runs") opts.runs = Number(argv[++i]);
    else if (a === "--out") opts.out = argv[++i];
    else if (a in SCENARIOS) opts.scenarios.push(a);
    else throw new Error(`unknown argument "${a}": scenarios are ${Object.keys(SCENARIOS).join(", ")}; options --runs N, --smoke, --use-running, --out DIR`);
  }
  if (!Number.isInteger(opts.runs) || opts.runs < 1) throw new Error("--runs needs a whole number of at least 1");
  if (opts.smoke) opts.runs = 1;
  if (opts.scenarios.length === 0) opts.scenarios = Object.keys(SCENARIOS);
  return opts;
}

/** Runs one step to its end; its figures come from stdout, its progress goes to this stderr. */
function runStep(step: Step, env: NodeJS.ProcessEnv): Promise<Figure[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(step.command, step.args, { env: { ...env, ...step.env }, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      process.stderr.write(c);
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (code === 0) resolve(parseFigures(out));
      else reject(new Error(`${[step.command, ...step.args].map((a) => a.replace(REPO_ROOT, ".")).join(" ")} failed (${signal ?? `exit ${code}`})`));
    });
  });
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  let env: NodeJS.ProcessEnv = process.env;
  let stop = async () => undefined as void;
  if (!opts.useRunning) {
    const stateDir = join(REPO_ROOT, ".satchel", "bench");
    killLeftovers(stateDir);
    env = { ...process.env, SATCHEL_STATE_DIR: stateDir, SATCHEL_PORT_BASE: process.env.SATCHEL_PORT_BASE ?? "26300", SATCHEL_LOG_LEVEL: "warn" };
    // Capacity figures: the per-user limits on changes would cap one busy client far below them.
    const limits = { ...JSON.parse(BUSY_CLIENT_LIMITS), commits: { perSecond: 1e6, burst: 1e6 } };
    const cluster = await startCluster(loadClusterConfig({ ...env, SATCHEL_RATE_LIMITS: JSON.stringify(limits) }), (l) => console.error(`[cluster] ${l}`));
    stop = () => cluster.stop();
  }
  const runs: Figure[][] = [];
  const failures: string[] = [];
  try {
    for (let r = 0; r < opts.runs; r++) {
      const figures: Figure[] = [];
      for (const name of opts.scenarios) {
        for (const step of SCENARIOS[name].steps(opts.smoke)) {
          console.error(`[bench] run ${r + 1}/${opts.runs}: ${name}: ${step.args.map((a) => a.replace(REPO_ROOT, ".")).join(" ")}`);
          figures.push(...(await runStep(step, env).catch((err: Error) => (failures.push(`run ${r + 1}, ${name}: ${err.message}`), []))));
        }
      }
      runs.push(figures);
    }
  } finally {
    await stop();
  }
  const { rows, missing } = tabulate(runs, opts.scenarios.flatMap((s) => SCENARIOS[s].comparisons(opts.smoke)));
  const date = new Date().toISOString().slice(0, 10);
  const machine = `${cpus().length} cores (${cpus()[0]?.model.trim() ?? "unknown CPU"}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  const table = renderTable(rows, { date, machine, runs: opts.runs });
  mkdirSync(opts.out, { recursive: true });
  const name = opts.smoke ? "smoke" : date;
  writeFileSync(join(opts.out, `${name}.json`), `${JSON.stringify({ date, machine, runs: opts.runs, smoke: opts.smoke, scenarios: opts.scenarios, figures: runs, rows, missing, failures }, null, 2)}\n`);
  writeFileSync(join(opts.out, `${name}.md`), table);
  if (!opts.smoke && failures.length === 0) {
    const readme = join(REPO_ROOT, "README.md");
    writeFileSync(readme, replaceBetween(readFileSync(readme, "utf8"), "<!-- bench:begin -->", "<!-- bench:end -->", table));
  }
  console.log(table);
  for (const f of failures) console.log(`failed: ${f}`);
  for (const m of missing) console.log(`missing: ${m} (no run printed it)`);
  process.exit(failures.length > 0 || missing.length > 0 ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err: Error) => {
    console.error(err.stack ?? err.message);
    process.exit(1);
  });
}
