import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { REPO_ROOT } from "../config.js";

export const CLI_BIN = join(REPO_ROOT, "client-sdk", "dist", "cli", "bin.js");

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment that points the `satchel` CLI at a test cluster as one account (no cluster file). */
export function cliEnv(endpoints: ClusterEndpoints, account: { username: string; password: string }, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    SATCHEL_CLUSTER_FILE: join(tmpdir(), "satchel-no-cluster-file.json"),
    SATCHEL_METASERVER_URL: endpoints.metaserver,
    SATCHEL_BLOCKSERVER_URL: endpoints.blockserver,
    SATCHEL_USERNAME: account.username,
    SATCHEL_PASSWORD: account.password,
    ...(endpoints.ca ? { SATCHEL_TLS_CA: endpoints.ca } : {}),
    ...extra,
  };
}

/** Runs the built `satchel` CLI; killed after timeoutMs. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [CLI_BIN, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (b) => (stdout += b));
  child.stderr!.on("data", (b) => (stderr += b));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const done = new Promise<CliResult>((resolve) => child.on("close", (code, signal) => {
    clearTimeout(timer);
    resolve({ code, signal, stdout, stderr });
  }));
  return { child, done };
}

/**
 * Runs the built `satchel` CLI to its end and reads its peak resident memory (VmHWM, Linux) while
 * it lives: what a user's machine gives an upload or a download.
 */
export async function runCliPeakRss(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 600_000): Promise<CliResult & { peakRssMiB: number }> {
  const { child, done } = runCli(args, env, timeoutMs);
  let peakKiB = 0;
  const read = () => readFile(`/proc/${child.pid}/status`, "utf8").then((s) => {
    peakKiB = Math.max(peakKiB, Number(/VmHWM:\s+(\d+) kB/.exec(s)?.[1] ?? 0));
  }, () => undefined);
  const timer = setInterval(() => void read(), 50);
  const result = await done;
  clearInterval(timer);
  return { ...result, peakRssMiB: peakKiB / 1024 };
}
