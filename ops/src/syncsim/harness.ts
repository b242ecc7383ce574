import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { appendFile, lstat, mkdir, readdir, readFile, rename, rm, truncate, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { chunkBuffer, SatchelClient } from "@satchel/client-sdk";
import { Role, type FileMetadata } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { waitServing, type ClusterEndpoints } from "../cluster/cluster.js";
import { caOf } from "../cluster/trust.js";
import { createAccount, type TestAccount } from "../testing/accounts.js";
import { CLI_BIN, cliEnv } from "../testing/cli.js";
import { ServiceProcesses, type ServiceProcess } from "../testing/service-process.js";
import {
  agentsIgnore, checkSimulation, eventsAbout, FOLDER, treeDiff, type DeviceView, type LoggedEvent, type ServerView, type SimRecord, type Tree, type UserWrite,
} from "./checker.js";
import { foldKey, planUserAction, type FsChange, type LocalListing, type PlanScope } from "./plan.js";
import { describeSimStep, makeSimSchedule, type SimSchedule, type SimStep } from "./schedule.js";

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
  /** User writes recorded (each judged: live, kept as a version, or removed by its user). */
  writes: number;
  /** Ignored names another client wrote (each must stay live on the server). */
  otherWrites: number;
  /** Restarts and stalls of the agents' metaserver and notifyserver. */
  serviceFaults: number;
  /** How the member's membership ended, if it did: "left" or "removed". */
  membershipEnded?: "left" | "removed";
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
  /**
   * The cluster's state directory: the agents then use a metaserver and a notifyserver of their own,
   * started beside the cluster's on ports `serviceOffset` (120 unless set; the notifyserver's 10
   * more) above the cluster's own, past every other test's extra processes, which the simulation
   * restarts and stalls without disturbing anyone else. Without it, no service faults.
   */
  stateDir?: string;
  serviceOffset?: number;
  /** The member leaves by deleting the shared folder's mount (see SCENARIO_DEFAULTS; on unless false). */
  leave?: boolean;
  /** The owner removes the member (on unless false). */
  removeMember?: boolean;
  /** A viewer's user changes the shared folder locally (on unless false; else a viewer only syncs). */
  viewerEdits?: boolean;
  /**
   * The other client writes ignored names into any folder (on unless false; else only into the root
   * and the shared folder, which no user deletes). In a folder a device then deletes, the server
   * keeps the folder for them, and every device must show it again.
   */
  ignoredInFolders?: boolean;
}

/**
 * The simulation's scenarios, each on by default and each with a switch (SATCHEL_SIM_<NAME>=off)
 * to narrow a failing seed down:
 * - LEAVE: the member deletes the shared folder's mount (it means leaving: the folder stays).
 * - REMOVE_MEMBER: the owner removes the member (its devices drop the folder and never fetch it
 *   again; a write it had not sent stays in its own tree).
 * - VIEWER_EDITS: a viewer's user changes the shared folder locally (nothing reaches the server,
 *   the server's tree comes back, the edits are set aside in the viewer's own tree).
 * - IGNORED_IN_FOLDERS: the other client writes ignored names into any folder, not only the root
 *   and the shared folder (a folder the server keeps for them after a device deleted it comes back
 *   on that device).
 * Each was off until the agent passed it (see the history of this comment for the seeds). The last,
 * VIEWER_EDITS, was off while seed 2 failed now and then: an owner's device truncated the file the
 * viewer had truncated, from the same version, and so wrote the viewer's bytes (a truncate writes
 * no tag of its own); the checker no longer blames a viewer for bytes an owner's device wrote too.
 */
export const SCENARIO_DEFAULTS = { leave: true, removeMember: true, viewerEdits: true, ignoredInFolders: true };

export function scenarioSwitches(env: NodeJS.ProcessEnv): typeof SCENARIO_DEFAULTS {
  const on = (name: string, byDefault: boolean) => (env[`SATCHEL_SIM_${name}`] ?? (byDefault ? "on" : "off")) !== "off";
  return {
    leave: on("LEAVE", SCENARIO_DEFAULTS.leave),
    removeMember: on("REMOVE_MEMBER", SCENARIO_DEFAULTS.removeMember),
    viewerEdits: on("VIEWER_EDITS", SCENARIO_DEFAULTS.viewerEdits),
    ignoredInFolders: on("IGNORED_IN_FOLDERS", SCENARIO_DEFAULTS.ignoredInFolders),
  };
}

/** The member's own root, in the checker's one tree of paths (beside the owner's): its own namespace. */
const MEMBER_ROOT = "/~member";

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

  constructor(
    readonly name: string, readonly dir: string, private readonly env: NodeJS.ProcessEnv, private readonly logDir: string,
    /** "owner", or "member" (the second account, in the owner's shared folder). */
    readonly account: "owner" | "member" = "owner",
  ) {}

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

/** One seed's run as it goes: its devices, clients, and what the users and faults did. */
interface Run {
  seed: number;
  schedule: SimSchedule;
  devices: SimDevice[];
  /** The owner's client (device "checker"): it reads the server and is the other client that writes ignored names. */
  owner: SatchelClient;
  member?: { client: SatchelClient; username: string; device: SimDevice; role: "editor" | "viewer"; endedAt?: number };
  record: SimRecord;
  report: SimReport;
  say: (line: string) => void;
  step: number;
  /** Where a device's user may act (a member only in the shared folder, while still a member). */
  scope: (d: SimDevice) => PlanScope | undefined;
}

/** The agents' own metaserver and notifyserver, which the simulation restarts and stalls. */
interface AgentServices {
  metaserver: ServiceProcess;
  notifyserver: ServiceProcess;
}

/**
 * Nucleus-style sync simulation: devices of two accounts, each a live `satchel sync` process
 * (watcher and notifications on), while seeded users create, edit, append, truncate, delete,
 * rename and move files and folders (case-only renames and NFD names too), agents go offline and
 * are killed with SIGKILL and restarted, the agents' metaserver and notifyserver restart and stall,
 * another client writes names every agent ignores, and the owner's shared folder loses its member
 * (who leaves by deleting its mount, or is removed), or has a viewer who edits locally. Every write
 * a user makes is recorded. After the last step every device and the server must settle on one
 * tree per account, and the checker judges every version any device synced and every write any
 * user made.
 */
export class SyncSimulation {
  private services?: Promise<AgentServices | undefined>;
  private readonly extra: ServiceProcesses[] = [];

  constructor(private readonly endpoints: ClusterEndpoints, private readonly opts: SimOptions) {}

  /** Stops the agents' own services (started by the first seed that needed them). */
  async close(): Promise<void> {
    for (const s of this.extra) await s.stopAll();
  }

  async run(seed: number): Promise<SimReport> {
    const schedule = makeSimSchedule(seed, { devices: this.opts.devices, steps: this.opts.steps });
    const report: SimReport = {
      seed, log: [], violations: [], userChanges: 0, kills: 0, killsMidPass: 0, offlinePeriods: 0, versionsSynced: 0, conflicts: 0, unverifiedEdits: 0,
      writes: 0, otherWrites: 0, serviceFaults: 0, convergeSeconds: 0,
    };
    const base = join(this.opts.workDir, `seed-${seed}-${randomBytes(3).toString("hex")}`);
    await mkdir(base, { recursive: true });
    const services = await this.agentServices();
    const ownerAccount = await createAccount(this.endpoints, `sim${seed}`);
    const memberAccount = schedule.member ? await createAccount(this.endpoints, `sim${seed}m`) : undefined;
    const devices = Array.from({ length: schedule.devices }, (_, i) => {
      const name = String.fromCharCode(65 + i);
      const member = schedule.member?.device === i;
      return new SimDevice(name, join(base, name), this.env(member ? memberAccount! : ownerAccount, name, services), base, member ? "member" : "owner");
    });
    const say = (line: string) => {
      report.log.push(line);
      this.opts.log?.(`[sim ${seed}] ${line}`);
    };
    const shared = schedule.shared;
    const run: Run = {
      seed, schedule, devices, report, say, step: -1,
      owner: this.client(ownerAccount),
      member: memberAccount && { client: this.client(memberAccount), username: memberAccount.username, device: devices[schedule.member!.device], role: schedule.member!.role },
      record: { writes: [], deletes: [], kills: [], revocations: [] },
      scope: (d) => {
        if (d.account === "owner") return { fixed: [shared] };
        const m = run.member!;
        // Out of the folder (left or removed), or a viewer whose edits are switched off: nothing to do.
        if (m.endedAt !== undefined || (m.role === "viewer" && this.opts.viewerEdits === false)) return undefined;
        return { root: shared, fixed: [shared] };
      },
    };
    try {
      for (const d of devices) await mkdir(d.dir, { recursive: true });
      if (run.member) {
        await run.owner.meta.createFolder({ path: shared });
        await run.owner.meta.shareFolder({ path: shared, username: run.member.username, role: run.member.role === "viewer" ? Role.VIEWER : Role.EDITOR });
        say(`${shared} shared with ${run.member.device.name}'s account as ${run.member.role}`);
      }
      await this.prelude(run);
      await this.steps(run, services);
      const started = Date.now();
      for (const d of devices) d.start();
      const agreed = await this.converge(run);
      report.convergeSeconds = (Date.now() - started) / 1000;
      const unsettled = agreed.ok ? undefined : `seed ${seed}: no single tree ${((this.opts.convergeTimeoutMs ?? 90_000) / 1000).toFixed(0)} s after the last step: ${agreed.why}`;
      say(`settled in ${report.convergeSeconds.toFixed(1)} s`);
      // Stopped first: the logs and the folders are final.
      await Promise.all(devices.map((d) => d.stop("SIGINT")));
      const server = await this.serverView(run);
      const views: DeviceView[] = [];
      for (const d of devices) views.push({ name: d.name, account: d.account, tree: (await localTree(d.dir)).tree, events: this.canonical(run, d, d.events(), server) });
      say(`final tree: ${[...server.live].filter(([, k]) => k !== FOLDER).map(([p]) => p).sort().join(", ")}`);
      const result = checkSimulation(views, server, run.record);
      report.violations.push(...result.violations.map((v) => `seed ${seed}: ${v}`));
      if (unsettled !== undefined) report.violations.unshift(unsettled);
      for (const d of report.violations.length > 0 ? devices : []) {
        for (const e of eventsAbout(report.violations, d.events())) say(`${d.name} event: ${JSON.stringify(e)}`);
      }
      report.versionsSynced = result.versionsSynced;
      report.conflicts = result.conflicts;
      report.unverifiedEdits = result.unverifiedEdits;
      report.writes = run.record.writes.length;
    } catch (err) {
      report.violations.push(`seed ${seed}: the simulation failed: ${(err as Error).stack ?? err}`);
    } finally {
      await Promise.all(devices.map((d) => d.stop("SIGKILL")));
      if (report.violations.length === 0 || !this.opts.keepFailed) await rm(base, { recursive: true, force: true });
      else say(`kept ${base} (folders, agent logs, event logs)`);
    }
    return report;
  }

  private client(account: TestAccount): SatchelClient {
    return new SatchelClient({ metaserverUrl: this.endpoints.metaserver, blockserverUrl: this.endpoints.blockserver, credentials: { ...account, deviceName: "checker" }, ca: caOf(this.endpoints) });
  }

  private env(account: TestAccount, name: string, services: AgentServices | undefined): NodeJS.ProcessEnv {
    return cliEnv(this.endpoints, account, {
      SATCHEL_METASERVER_URL: services?.metaserver.url ?? this.endpoints.metaserver,
      SATCHEL_NOTIFYSERVER_URL: services?.notifyserver.url ?? this.endpoints.notifyserver,
      SATCHEL_DEVICE_NAME: name, SATCHEL_LOG_LEVEL: "warn",
    });
  }

  /**
   * The agents' metaserver and notifyserver: extra processes beside the cluster's (the cluster's
   * own serve every other test, and the checker), started once and kept for every seed.
   */
  private agentServices(): Promise<AgentServices | undefined> {
    const stateDir = this.opts.stateDir;
    if (!stateDir) return Promise.resolve(undefined);
    this.services ??= (async () => {
      const offset = this.opts.serviceOffset ?? 120;
      const meta = new ServiceProcesses("metaserver", this.endpoints, stateDir);
      const notify = new ServiceProcesses("notifyserver", this.endpoints, stateDir);
      this.extra.push(meta, notify);
      // Our ports lie in the ephemeral range, where an outgoing connection may hold one for a moment: tried again.
      const start = async (s: ServiceProcesses, name: string, at: number) => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await s.start(name, at);
          } catch (err) {
            if (attempt === 3) throw err;
            await sleep(2000);
          }
        }
      };
      const [metaserver, notifyserver] = await Promise.all([start(meta, "syncsim-metaserver", offset), start(notify, "syncsim-notifyserver", offset + 10)]);
      return { metaserver, notifyserver };
    })();
    return this.services;
  }

  /**
   * Every device starts and gets the shared folder's mount; then device A writes the shared ground,
   * and every device gets it before the races begin. (The mount comes first: an agent that finds a
   * local folder where the server has a shared folder it has not pulled yet fails every pass, its
   * CreateFolder refused with FAILED_PRECONDITION; reported, not what this simulation is about.)
   */
  private async prelude(run: Run): Promise<void> {
    for (const d of run.devices) d.start();
    const mounted = await this.converge(run, 60_000);
    if (!mounted.ok) throw new Error(`the devices did not get the shared folder: ${mounted.why}`);
    for (const f of run.schedule.prelude) await this.write(run, run.devices[0], f.path, "create", f.size);
    const agreed = await this.converge(run, 60_000);
    if (!agreed.ok) throw new Error(`the devices did not get the prelude: ${agreed.why}`);
    run.say(`prelude: ${run.schedule.prelude.length} files on every device`);
  }

  private async steps(run: Run, services: AgentServices | undefined): Promise<void> {
    const { schedule, devices, report, say } = run;
    const offlineUntil = new Map<SimDevice, number>();
    const faults: Promise<void>[] = [];
    // One fault at a time per service: a restart never lands on a stalled process.
    const serviceChain = new Map<string, Promise<void>>();
    for (const [i, step] of schedule.steps.entries()) {
      run.step = i;
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
      if (step.kind === "other-write") {
        await this.otherWrite(run, step);
        continue;
      }
      if (step.kind === "service") {
        if (!services) continue;
        report.serviceFaults++;
        say(describeSimStep(step));
        const svc = services[step.service];
        const next = (serviceChain.get(step.service) ?? Promise.resolve()).then(() => serviceFault(svc, step, caOf(this.endpoints)));
        serviceChain.set(step.service, next);
        faults.push(next);
        continue;
      }
      if (step.kind === "leave" || step.kind === "unshare") {
        await this.endMembership(run, step);
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
          run.record.kills.push({ device: d.name, at: Date.now() });
          await d.stop("SIGKILL");
          await sleep(step.downMs);
          if (!offlineUntil.has(d)) d.start();
        })());
        continue;
      }
      const scope = run.scope(d);
      if (!scope) continue;
      const { listing } = await localTree(d.dir);
      if (scope.root && !listing.dirs.includes(scope.root)) continue;
      const change = planUserAction(listing, step.action, step.pick, scope);
      if (!change) continue;
      report.userChanges++;
      say(`${describeSimStep(step)}: ${describeChange(change)}`);
      await this.apply(run, d, change, step.size).catch((err: Error) => say(`${d.name}: ${describeChange(change)} did not happen: ${err.message}`));
    }
    await Promise.all(faults);
    // Every service serves again before the devices are asked to agree.
    if (services) {
      for (const svc of [services.metaserver, services.notifyserver]) await waitServing(svc.proc.name, svc.url, svc.proc, 60_000, caOf(this.endpoints));
    }
  }

  /**
   * The member leaves (its device deletes the shared folder's mount: that is leaving, and the folder
   * stays for the owner) or the owner removes it. Either way, what its device had not sent of the
   * folder goes with the membership; for the rest of the seed its user leaves the folder alone.
   */
  private async endMembership(run: Run, step: Extract<SimStep, { kind: "leave" | "unshare" }>): Promise<void> {
    const m = run.member;
    if (!m || m.endedAt !== undefined) return;
    const shared = run.schedule.shared;
    if (step.kind === "leave") {
      if (this.opts.leave === false) return;
      const mount = join(m.device.dir, shared.slice(1));
      if (!existsSync(mount)) return;
      run.say(describeSimStep(step));
      m.endedAt = Date.now();
      run.record.revocations.push({ devices: [m.device.name], folder: shared, at: m.endedAt });
      await this.remove(run, m.device, shared, true);
      run.report.membershipEnded = "left";
      return;
    }
    if (this.opts.removeMember === false) return;
    run.say(describeSimStep(step));
    m.endedAt = Date.now();
    run.record.revocations.push({ devices: [m.device.name], folder: shared, at: m.endedAt });
    await run.owner.meta.unshare({ path: shared, username: m.username });
    run.report.membershipEnded = "removed";
  }

  /** Another client (no agent: the owner's web upload) writes a name every agent ignores into a folder the server holds. */
  private async otherWrite(run: Run, step: Extract<SimStep, { kind: "other-write" }>): Promise<void> {
    const folders = this.opts.ignoredInFolders === false
      ? [run.schedule.shared]
      : [...serverTree(await listEverything(run.owner))].filter(([p, k]) => k === FOLDER && !agentsIgnore(p)).map(([p]) => p).sort();
    const parent = ["", ...folders][step.pick % (folders.length + 1)];
    const path = `${parent}/o${run.step}${[".tmp", "~", ".part"][step.pick % 3]}`;
    const bytes = Buffer.concat([Buffer.from(`other write ${run.step} ${randomBytes(6).toString("hex")}\n`), randomBytes(step.size)]);
    const local = join(this.opts.workDir, `other-${run.seed}-${run.step}-${randomBytes(3).toString("hex")}`);
    await writeFile(local, bytes);
    try {
      await run.owner.upload(local, path);
      run.record.writes.push({ device: "other", path, key: contentKey(bytes), at: Date.now(), step: run.step, ignoredName: true });
      run.report.otherWrites++;
      run.say(`another client writes ${path}`);
    } catch (err) {
      run.say(`another client's write of ${path} did not happen: ${(err as Error).message}`);
    } finally {
      await rm(local, { force: true });
    }
  }

  private async apply(run: Run, d: SimDevice, change: FsChange, size: number): Promise<void> {
    const at = (p: string) => join(d.dir, ...p.split("/").filter(Boolean));
    switch (change.op) {
      case "write": return this.write(run, d, change.path, change.mode, size);
      case "rm": return this.remove(run, d, change.path, change.folder);
      case "mkdir": return void (await mkdir(at(change.path), { recursive: true }));
      case "rename":
        // Another device's change may have moved things meanwhile: a rename of what is gone is a no-op.
        if (!(await lstat(at(change.from)).catch(() => undefined))) return;
        await mkdir(dirname(at(change.to)), { recursive: true });
        return rename(at(change.from), at(change.to));
    }
  }

  /** A user's rm: recorded with every content it removed (the writes it names). */
  private async remove(run: Run, d: SimDevice, path: string, folder: boolean): Promise<void> {
    const target = join(d.dir, ...path.split("/").filter(Boolean));
    const info = await lstat(target).catch(() => undefined);
    const keys = !info ? [] : info.isDirectory() ? [...(await localTree(target)).tree.values()].filter((k) => k !== FOLDER) : [contentKey(await readFile(target))];
    run.record.deletes.push({ device: d.name, path, keys, at: Date.now(), step: run.step });
    // The agent may write into the folder meanwhile (a download, a restored file): like a user's
    // `rm -r` meeting that, it tries again a few times and may leave what kept appearing.
    await rm(target, { recursive: folder, force: true, maxRetries: 5, retryDelay: 50 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOTEMPTY") throw err;
    });
  }

  /**
   * A user's write: every content is unique (device, seed-run and write number in its first line).
   * Recorded with the content it leaves (computed from the bytes written, not read back: an agent
   * may already be changing the file) and the content it replaced.
   */
  private async write(run: Run, d: SimDevice, path: string, mode: "create" | "overwrite" | "append" | "truncate", size: number): Promise<void> {
    const target = join(d.dir, ...path.split("/").filter(Boolean));
    const body = Buffer.concat([Buffer.from(`${d.name} write ${++d.writes} ${randomBytes(6).toString("hex")}\n`), randomBytes(size)]);
    await mkdir(dirname(target), { recursive: true });
    const before = await readFile(target).catch(() => undefined);
    let after = body;
    let replaced = before;
    if (mode === "append" && before) {
      await appendFile(target, body);
      after = Buffer.concat([before, body]);
      // What the append extended is what the file held when it landed: a download may have been
      // renamed into place between the read above and the append (sim seed 77 judged such a write lost).
      const landed = await readFile(target).catch(() => undefined);
      if (landed && landed.length >= body.length && landed.subarray(landed.length - body.length).equals(body)) {
        after = landed;
        replaced = landed.subarray(0, landed.length - body.length);
      }
    } else if (mode === "truncate" && before && before.length > 64) {
      await truncate(target, Math.floor(before.length / 2));
      after = before.subarray(0, Math.floor(before.length / 2));
    } else {
      await writeFile(target, body);
    }
    const m = run.member;
    run.record.writes.push({
      device: d.name, path, key: contentKey(after), replaced: replaced && contentKey(replaced), at: Date.now(), step: run.step,
      viewOnly: m?.device === d && m.role === "viewer" && path.startsWith(`${run.schedule.shared}/`) ? run.schedule.shared : undefined,
    });
  }

  /** Each device's account's tree as the server holds it, without the names every agent ignores. */
  private async remoteTrees(run: Run): Promise<{ owner: Tree; member?: Tree }> {
    const visible = (t: Tree): Tree => new Map([...t].filter(([p]) => !agentsIgnore(p)));
    return {
      owner: visible(serverTree(await listEverything(run.owner))),
      member: run.member && visible(serverTree(await listEverything(run.member.client))),
    };
  }

  /**
   * Waits until every device and the server hold one tree, twice in a row a second apart (agents
   * may still be moving things between two identical looks); gives the last difference on timeout.
   */
  private async converge(run: Run, timeoutMs = this.opts.convergeTimeoutMs ?? 90_000): Promise<{ ok: boolean; why: string }> {
    const deadline = Date.now() + timeoutMs;
    let previous = "";
    let why = "";
    while (Date.now() < deadline) {
      await sleep(1000);
      const remote = await this.remoteTrees(run);
      const diffs: string[] = [];
      for (const d of run.devices) {
        const { tree } = await localTree(d.dir);
        const nfc: Tree = new Map([...tree].map(([p, k]) => [p.normalize("NFC"), k]));
        const diff = treeDiff(nfc, (d.account === "member" && remote.member) || remote.owner);
        if (diff.length > 0 || nfc.size !== tree.size) diffs.push(`${d.name}: ${diff.slice(0, 6).join("; ") || "twins"}`);
      }
      if (diffs.length > 0) {
        why = diffs.join(" | ");
        previous = "";
        continue;
      }
      const signature = [...remote.owner, ...(remote.member ?? [])].sort().join("\n");
      if (signature === previous) return { ok: true, why: "" };
      previous = signature;
    }
    return { ok: false, why };
  }

  /**
   * A device's events with paths in the checker's one tree: the member's mount is at the owner's
   * path of the shared folder, so its paths there are the owner's while it is a member; anywhere
   * else, or after that, what its agent does is in its own root (MEMBER_ROOT), except an upload the
   * shared folder holds (committed there before its agent left or heard of the removal, which may be
   * well after the user's step; the file may have moved there since).
   */
  private canonical(run: Run, d: SimDevice, events: LoggedEvent[], server: ServerView): LoggedEvent[] {
    if (d.account !== "member") return events;
    const shared = run.schedule.shared;
    // A member who left did so when its agent said so (the user's delete of the mount comes first; the
    // agent may still send what it had pending there before it sees that delete).
    const leftAt = events.find((e) => e.kind === "leave" && e.path === shared)?.at ?? 0;
    const endedAt = Math.max(run.member?.endedAt ?? Infinity, leftAt);
    // By revision and content, not path: the file may have moved in the folder since.
    const inShared = new Set(server.histories.filter((h) => h.path.startsWith(`${shared}/`))
      .flatMap((h) => h.revisions.map((r) => `${r.revision}#${r.key}`)));
    const own = (p: string) => `${MEMBER_ROOT}${p}`;
    const mounted = (p: string) => p === shared || p.startsWith(`${shared}/`);
    return events.map((e) => {
      // Events that name no path (pending, synced, error) belong to no tree.
      if (e.path === undefined) return e;
      if ((e.at ?? 0) < endedAt && mounted(e.path)) return e;
      if (e.kind === "upload" && mounted(e.path) && inShared.has(`${e.revision}#${e.blocks?.join(",")}`)) return e;
      return { ...e, path: own(e.path), ...(e.to ? { to: own(e.to) } : {}) };
    });
  }

  /** The server as the checker reads it: the owner's tree (with the shared folder), and the member's own root beside it. */
  private async serverView(run: Run): Promise<ServerView> {
    const view = await serverView(run.owner);
    view.sharedFolders = [run.schedule.shared, MEMBER_ROOT];
    const m = run.member;
    if (!m) return view;
    view.liveOf = { member: serverTree(await listEverything(m.client)) };
    const mounts = (await m.client.meta.listNamespaces({})).namespaces.map((n) => n.path).filter((p) => p !== "/");
    const own = await serverView(m.client, (p) => !mounts.some((mp) => p === mp || p.startsWith(`${mp}/`)));
    view.trashed.push(...own.trashed.map((t) => ({ ...t, path: `${MEMBER_ROOT}${t.path}` })));
    view.histories.push(...own.histories.map((h) => ({ ...h, path: `${MEMBER_ROOT}${h.path}` })));
    return view;
  }
}

/** A restart (down for downMs, then started again) or a stall (SIGSTOP, then SIGCONT) of one of the agents' services. */
async function serviceFault(svc: ServiceProcess, step: Extract<SimStep, { kind: "service" }>, ca: Buffer | undefined): Promise<void> {
  if (step.fault === "pause") {
    const pid = svc.proc.pid;
    if (pid === undefined) return;
    process.kill(pid, "SIGSTOP");
    await sleep(step.downMs);
    process.kill(pid, "SIGCONT");
    return;
  }
  await svc.proc.stop(5000);
  await sleep(step.downMs);
  await startAgain(svc, ca);
}

/** Starts a stopped service again, until it serves (its port may be held for a moment by an outgoing connection). */
async function startAgain(svc: ServiceProcess, ca: Buffer | undefined): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    svc.proc.start();
    try {
      return await waitServing(svc.proc.name, svc.url, svc.proc, 30_000, ca);
    } catch (err) {
      if (attempt === 5) throw err;
      await svc.proc.stop(1000);
      await sleep(1000);
    }
  }
}

function serverTree(entries: FileMetadata[]): Tree {
  return new Map(entries.filter((e) => !e.isDeleted).map((e) => [e.path, e.isFolder ? FOLDER : remoteKey(e)]));
}

/**
 * Everything in an account's tree: a recursive listing of its root stops at a shared folder's
 * mount (another namespace), so each mount is listed too.
 */
async function listEverything(client: SatchelClient, includeDeleted = false): Promise<FileMetadata[]> {
  const { namespaces } = await client.meta.listNamespaces({});
  const out: FileMetadata[] = [];
  const seen = new Set<string>();
  for (const root of ["/", ...namespaces.map((n) => n.path).filter((p) => p !== "/")]) {
    let pageToken = "";
    do {
      const page = await client.meta.listFolder({ path: root, recursive: true, includeDeleted, pageToken });
      for (const e of page.entries) {
        const id = `${e.path}|${e.isFolder}|${e.isDeleted}|${e.revision}`;
        if (!seen.has(id)) out.push(e);
        seen.add(id);
      }
      pageToken = page.hasMore ? page.nextPageToken : "";
    } while (pageToken);
  }
  return out;
}

/** The server's live tree, its trash and the history of every file path it knows (of the paths `keep` keeps). */
async function serverView(client: SatchelClient, keep: (path: string) => boolean = () => true): Promise<ServerView> {
  const live = new Map([...serverTree(await listEverything(client))].filter(([p]) => keep(p)));
  const everything = (await listEverything(client, true)).filter((e) => keep(e.path));
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
