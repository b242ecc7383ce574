import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { appendFile, lstat, mkdir, readdir, readFile, rename, rm, truncate, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { chunkBuffer, SatchelClient } from "@satchel/client-sdk";
import type { FileMetadata } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { caOf } from "../cluster/trust.js";
import { createAccount, type TestAccount } from "../testing/accounts.js";
import { CLI_BIN, cliEnv } from "../testing/cli.js";
import { checkSimulation, FOLDER, treeDiff, type DeviceView, type LoggedEvent, type ServerView, type Tree } from "./checker.js";
import { foldKey, planUserAction, type FsChange, type LocalListing } from "./plan.js";
import { describeSimStep, makeSimSchedule, type SimSchedule } from "./schedule.js";

export interface SimReport {
  seed: number;
  /** Every step as it ran, with the change it made: what a failing seed prints. */
  log: string[];
  violations: string[];
  userChanges: number;
  kills: number;
  /** Kills that landed in the middle of a pass (an upload, a download or the journal being applied). */
  killsMidPass: number;
  offlinePeriods: number;
  versionsSynced: number;
  conflicts: number;
  unverifiedEdits: number;
  /** From the last step until every device and the server held one tree. */
  convergeSeconds: number;
}

export interface SimOptions {
  devices: number;
  steps: number;
  /** Where device folders, agent logs and event logs go (one folder per seed). */
  workDir: string;
  /** How long the devices may take to agree after the last step. */
  convergeTimeoutMs?: number;
  /** Keeps a failing seed's folders and logs for a look. */
  keepFailed?: boolean;
  log?: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** A version's key, from its bytes (as the server's block list names them). */
export const contentKey = (b: Uint8Array) => chunkBuffer(b).map(sha256).join(",");
const remoteKey = (f: FileMetadata) => f.blocks.map((b) => Buffer.from(b.hash).toString("hex")).join(",");

/** One device: a folder with a `satchel sync` process on it, which the simulation stops and kills. */
class SimDevice {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  /** Writes by this device's user: the tag makes every content unique. */
  writes = 0;

  constructor(readonly name: string, readonly dir: string, private readonly env: NodeJS.ProcessEnv, private readonly logDir: string) {}

  get eventLog(): string {
    return join(this.logDir, `${this.name}.events.jsonl`);
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  start(): void {
    if (this.child) return;
    const out = openSync(join(this.logDir, `${this.name}.agent.log`), "a");
    const child = spawn(process.execPath, [CLI_BIN, "sync", this.dir, "--rescan", "2", "--event-log", this.eventLog], { env: this.env, stdio: ["ignore", out, out] });
    closeSync(out);
    this.child = child;
    this.exited = new Promise((done) => child.once("exit", () => {
      if (this.child === child) this.child = undefined;
      done();
    }));
  }

  /** SIGINT (the agent finishes its pass and exits) or SIGKILL (whatever it was doing stops there). */
  async stop(signal: "SIGINT" | "SIGKILL"): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = this.exited!;
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  events(): LoggedEvent[] {
    if (!existsSync(this.eventLog)) return [];
    // A line cut short by SIGKILL is not an event.
    return readFileSync(this.eventLog, "utf8").split("\n").flatMap((l) => {
      try {
        return l ? [JSON.parse(l) as LoggedEvent] : [];
      } catch {
        return [];
      }
    });
  }
}

const SKIP = /^\.satchel-sync$|\.partial$/;

/** A device's folder: its files and folders, and the key of each file's content. */
async function localTree(root: string): Promise<{ listing: LocalListing; tree: Tree }> {
  const listing: LocalListing = { files: [], dirs: [] };
  const tree: Tree = new Map();
  const walk = async (dir: string, prefix: string) => {
    for (const d of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (SKIP.test(d.name)) continue;
      const path = `${prefix}/${d.name}`;
      if (d.isDirectory()) {
        listing.dirs.push(path);
        tree.set(path, FOLDER);
        await walk(join(dir, d.name), path);
      } else if (d.isFile()) {
        const bytes = await readFile(join(dir, d.name)).catch(() => undefined);
        if (!bytes) continue;
        listing.files.push(path);
        tree.set(path, contentKey(bytes));
      }
    }
  };
  await walk(root, "");
  listing.files.sort();
  listing.dirs.sort();
  return { listing, tree };
}

/**
 * Nucleus-style sync simulation: N devices of one account, each a live `satchel sync` process
 * (watcher and notifications on), while seeded users create, edit, append, truncate, delete,
 * rename and move files and folders (case-only renames and NFD names too), agents go offline and
 * are killed with SIGKILL and restarted. After the last step every device and the server must
 * settle on one tree, and the checker judges every version any device synced.
 */
export class SyncSimulation {
  constructor(private readonly endpoints: ClusterEndpoints, private readonly opts: SimOptions) {}

  async run(seed: number): Promise<SimReport> {
    const schedule = makeSimSchedule(seed, { devices: this.opts.devices, steps: this.opts.steps });
    const report: SimReport = {
      seed, log: [], violations: [], userChanges: 0, kills: 0, killsMidPass: 0, offlinePeriods: 0, versionsSynced: 0, conflicts: 0, unverifiedEdits: 0, convergeSeconds: 0,
    };
    const base = join(this.opts.workDir, `seed-${seed}-${randomBytes(3).toString("hex")}`);
    await mkdir(base, { recursive: true });
    const account = await createAccount(this.endpoints, `sim${seed}`);
    const client = new SatchelClient({ metaserverUrl: this.endpoints.metaserver, blockserverUrl: this.endpoints.blockserver, credentials: { ...account, deviceName: "checker" }, ca: caOf(this.endpoints) });
    const devices = Array.from({ length: schedule.devices }, (_, i) => {
      const name = String.fromCharCode(65 + i);
      return new SimDevice(name, join(base, name), this.env(account, name), base);
    });
    const say = (line: string) => {
      report.log.push(line);
      this.opts.log?.(`[sim ${seed}] ${line}`);
    };
    try {
      for (const d of devices) await mkdir(d.dir, { recursive: true });
      await this.prelude(schedule, devices, client, report, say);
      await this.steps(schedule, devices, report, say);
      const started = Date.now();
      for (const d of devices) d.start();
      const agreed = await this.converge(devices, client);
      report.convergeSeconds = (Date.now() - started) / 1000;
      if (!agreed.ok) report.violations.push(`no single tree ${((this.opts.convergeTimeoutMs ?? 90_000) / 1000).toFixed(0)} s after the last step: ${agreed.why}`);
      say(`settled in ${report.convergeSeconds.toFixed(1)} s`);
      // Stopped first: the logs and the folders are final.
      await Promise.all(devices.map((d) => d.stop("SIGINT")));
      const views: DeviceView[] = [];
      for (const d of devices) views.push({ name: d.name, tree: (await localTree(d.dir)).tree, events: d.events() });
      const server = await serverView(client);
      say(`final tree: ${[...server.live].filter(([, k]) => k !== FOLDER).map(([p]) => p).sort().join(", ")}`);
      const result = checkSimulation(views, server);
      report.violations.push(...result.violations);
      report.versionsSynced = result.versionsSynced;
      report.conflicts = result.conflicts;
      report.unverifiedEdits = result.unverifiedEdits;
    } catch (err) {
      report.violations.push(`the simulation failed: ${(err as Error).stack ?? err}`);
    } finally {
      await Promise.all(devices.map((d) => d.stop("SIGKILL")));
      if (report.violations.length === 0 || !this.opts.keepFailed) await rm(base, { recursive: true, force: true });
      else say(`kept ${base} (folders, agent logs, event logs)`);
    }
    return report;
  }

  private env(account: TestAccount, name: string): NodeJS.ProcessEnv {
    return cliEnv(this.endpoints, account, { SATCHEL_NOTIFYSERVER_URL: this.endpoints.notifyserver, SATCHEL_DEVICE_NAME: name, SATCHEL_LOG_LEVEL: "warn" });
  }

  /** Device A writes the shared ground; every device starts and gets it before the races begin. */
  private async prelude(schedule: SimSchedule, devices: SimDevice[], client: SatchelClient, report: SimReport, say: (l: string) => void): Promise<void> {
    for (const f of schedule.prelude) await this.write(devices[0], f.path, "create", f.size);
    for (const d of devices) d.start();
    const agreed = await this.converge(devices, client, 60_000);
    if (!agreed.ok) throw new Error(`the devices did not get the prelude: ${agreed.why}`);
    say(`prelude: ${schedule.prelude.length} files on every device`);
  }

  private async steps(schedule: SimSchedule, devices: SimDevice[], report: SimReport, say: (l: string) => void): Promise<void> {
    const offlineUntil = new Map<SimDevice, number>();
    const faults: Promise<void>[] = [];
    for (const [i, step] of schedule.steps.entries()) {
      for (const [d, until] of offlineUntil) {
        if (i < until) continue;
        offlineUntil.delete(d);
        d.start();
        say(`${d.name}: back online`);
      }
      if (step.kind === "wait") {
        await sleep(step.ms);
        continue;
      }
      const d = devices[step.device];
      if (step.kind === "offline") {
        if (offlineUntil.has(d)) continue;
        report.offlinePeriods++;
        offlineUntil.set(d, i + step.steps);
        say(describeSimStep(step));
        await d.stop("SIGINT");
        continue;
      }
      if (step.kind === "kill") {
        if (offlineUntil.has(d) || !d.running) continue;
        report.kills++;
        say(describeSimStep(step));
        faults.push((async () => {
          await sleep(step.afterMs);
          if (!d.running) return;
          // Its last word says whether a pass was under way: anything after the last "synced".
          const last = d.events().at(-1);
          if (last && last.kind !== "synced") report.killsMidPass++;
          await d.stop("SIGKILL");
          await sleep(step.downMs);
          if (!offlineUntil.has(d)) d.start();
        })());
        continue;
      }
      const { listing } = await localTree(d.dir);
      const change = planUserAction(listing, step.action, step.pick);
      if (!change) continue;
      report.userChanges++;
      say(`${describeSimStep(step)}: ${describeChange(change)}`);
      await this.apply(d, change, step.size).catch((err: Error) => say(`${d.name}: ${describeChange(change)} did not happen: ${err.message}`));
    }
    await Promise.all(faults);
  }

  private async apply(d: SimDevice, change: FsChange, size: number): Promise<void> {
    const at = (p: string) => join(d.dir, ...p.split("/").filter(Boolean));
    switch (change.op) {
      case "write": return this.write(d, change.path, change.mode, size);
      case "rm": return rm(at(change.path), { recursive: change.folder, force: true });
      case "mkdir": return void (await mkdir(at(change.path), { recursive: true }));
      case "rename":
        // Another device's change may have moved things meanwhile: a rename of what is gone is a no-op.
        if (!(await lstat(at(change.from)).catch(() => undefined))) return;
        await mkdir(dirname(at(change.to)), { recursive: true });
        return rename(at(change.from), at(change.to));
    }
  }

  /** A user's write: every content is unique (device, seed-run and write number in its first line). */
  private async write(d: SimDevice, path: string, mode: "create" | "overwrite" | "append" | "truncate", size: number): Promise<void> {
    const target = join(d.dir, ...path.split("/").filter(Boolean));
    const body = () => Buffer.concat([Buffer.from(`${d.name} write ${++d.writes} ${randomBytes(6).toString("hex")}\n`), randomBytes(size)]);
    await mkdir(dirname(target), { recursive: true });
    if (mode === "append") return appendFile(target, body());
    if (mode === "truncate") {
      const now = await lstat(target).catch(() => undefined);
      if (now && now.size > 64) return truncate(target, Math.floor(now.size / 2));
    }
    await writeFile(target, body());
  }

  /**
   * Waits until every device and the server hold one tree, twice in a row a second apart (agents
   * may still be moving things between two identical looks); gives the last difference on timeout.
   */
  private async converge(devices: SimDevice[], client: SatchelClient, timeoutMs = this.opts.convergeTimeoutMs ?? 90_000): Promise<{ ok: boolean; why: string }> {
    const deadline = Date.now() + timeoutMs;
    let previous = "";
    let why = "";
    while (Date.now() < deadline) {
      await sleep(1000);
      const remote = serverTree(await client.list("/", true));
      const diffs: string[] = [];
      for (const d of devices) {
        const { tree } = await localTree(d.dir);
        const nfc: Tree = new Map([...tree].map(([p, k]) => [p.normalize("NFC"), k]));
        const diff = treeDiff(nfc, remote);
        if (diff.length > 0 || nfc.size !== tree.size) diffs.push(`${d.name}: ${diff.slice(0, 6).join("; ") || "twins"}`);
      }
      if (diffs.length > 0) {
        why = diffs.join(" | ");
        previous = "";
        continue;
      }
      const signature = [...remote].sort().join("\n");
      if (signature === previous) return { ok: true, why: "" };
      previous = signature;
    }
    return { ok: false, why };
  }
}

function serverTree(entries: FileMetadata[]): Tree {
  return new Map(entries.filter((e) => !e.isDeleted).map((e) => [e.path, e.isFolder ? FOLDER : remoteKey(e)]));
}

/** The server's live tree, its trash and the history of every file path it knows. */
async function serverView(client: SatchelClient): Promise<ServerView> {
  const live = serverTree(await client.list("/", true));
  const everything: FileMetadata[] = [];
  let pageToken = "";
  do {
    const page = await client.meta.listFolder({ path: "/", recursive: true, includeDeleted: true, pageToken });
    everything.push(...page.entries);
    pageToken = page.hasMore ? page.nextPageToken : "";
  } while (pageToken);
  const trashed = everything.filter((e) => e.isDeleted && !e.isFolder).map((e) => ({ path: e.path, revision: e.revision.toString() }));
  const paths = new Map<string, string>();
  for (const e of everything) if (!e.isFolder) paths.set(foldKey(e.path), e.path);
  const histories: ServerView["histories"] = [];
  for (const path of paths.values()) {
    const { revisions } = await client.meta.listRevisions({ path });
    histories.push({
      path,
      revisions: revisions.map((r) => ({ revision: r.revision.toString(), key: remoteKey(r), cursor: r.cursor.toString() }))
        .sort((a, b) => Number(BigInt(a.revision) - BigInt(b.revision))),
    });
  }
  return { live, trashed, histories };
}

function describeChange(c: FsChange): string {
  switch (c.op) {
    case "write": return `${c.mode} ${c.path}`;
    case "rm": return `rm ${c.folder ? "-r " : ""}${c.path}`;
    case "mkdir": return `mkdir ${c.path}`;
    case "rename": return `mv ${c.from} ${c.to}`;
  }
}
