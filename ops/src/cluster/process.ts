import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** A child process of the cluster, with its log file and pid file under the state directory. */
export class ManagedProcess {
  private child?: ChildProcess;
  private exited?: Promise<number | null>;

  constructor(
    readonly name: string,
    private readonly stateDir: string,
    private readonly command: string,
    private readonly args: string[],
    private readonly env: Record<string, string> = {},
    /** Run in a session of its own, outliving the process that started it (a fault test restarting a node). */
    private readonly detached = false,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get logFile(): string {
    return join(this.stateDir, "logs", `${this.name}.log`);
  }

  private get pidFile(): string {
    return join(this.stateDir, "run", `${this.name}.pid`);
  }

  start(): void {
    killStale(this.pidFile);
    mkdirSync(join(this.stateDir, "logs"), { recursive: true });
    mkdirSync(join(this.stateDir, "run"), { recursive: true });
    const log = openSync(this.logFile, "a");
    const child = spawn(this.command, this.args, {
      env: { ...process.env, ...this.env },
      stdio: ["ignore", log, log],
      detached: this.detached,
    });
    closeSync(log);
    if (this.detached) child.unref();
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    child.once("error", () => undefined);
    if (child.pid) writeFileSync(this.pidFile, String(child.pid));
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the exit code when the process ends. */
  waitExit(): Promise<number | null> {
    return this.exited ?? Promise.resolve(null);
  }

  /** SIGTERM, then SIGKILL after the grace period. */
  async stop(graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) {
      // Someone else (a fault test) may have restarted this process: end whatever the pid file names.
      killStale(this.pidFile);
      return;
    }
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
    rmSync(this.pidFile, { force: true });
  }

  /** Immediate SIGKILL: the fault tests' power cut. */
  async kill(): Promise<void> {
    if (!this.child || !this.running) return;
    this.child.kill("SIGKILL");
    await this.exited;
    rmSync(this.pidFile, { force: true });
  }

  /** The last lines of the process's log, for error messages. */
  tail(lines = 20): string {
    if (!existsSync(this.logFile)) return "";
    return readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
  }
}

/** Ends every process a previous run left behind in this state directory (from its pid files). */
export function killLeftovers(stateDir: string): void {
  const run = join(stateDir, "run");
  if (!existsSync(run)) return;
  for (const f of readdirSync(run)) if (f.endsWith(".pid")) killStale(join(run, f));
}

/** A previous launcher that died may have left this process running: end it (and wait) before reuse. */
function killStale(pidFile: string): void {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8"));
  rmSync(pidFile, { force: true });
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return; // already gone
  }
  // Its ports are free only once it is gone.
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

/** Thrown from a waitFor check to give up at once (the process being waited for has died). */
export class WaitAbortedError extends Error {}

/** Polls until check() is true, or throws after timeoutMs with the given description. */
export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, onTimeout?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      if (err instanceof WaitAbortedError) throw new Error(`${what}: ${err.message}`);
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  const detail = lastError instanceof Error ? `: ${lastError.message}` : "";
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}${onTimeout ? `\n${onTimeout()}` : ""}`);
}
