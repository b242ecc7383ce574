import { createHash } from "node:crypto";
import { watch, type Dirent, type FSWatcher } from "node:fs";
import { lstat, mkdir, open, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createSatchelTransport } from "@satchel/proto";
import { Operation, Role, type BlockRef, type FileMetadata, type JournalEntry } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { isPartialDownload, type SatchelClient } from "../client.js";
import { isIgnored } from "./ignore.js";
import { baseName, foldKey, parentPath, within } from "./paths.js";
import { failureCause, failureScope, isDue, PROBLEM_RETRY, recordFailure, type ProblemDirection, type RetryPolicy, type SyncProblem } from "./problems.js";
import { SyncState, type FollowUps, type SyncedFile } from "./state.js";

export const STATE_DIR = ".satchel-sync";

export type SyncEvent =
  | { kind: "download" | "delete-local" | "move-local" | "move-remote" | "conflict"; path: string; bytes?: number; to?: string }
  /** A version committed: its revision, the revision it was made from (0 for a new file) and its blocks (hex). */
  | { kind: "upload"; path: string; bytes: number; revision: string; parentRevision: string; blocks: string[] }
  /**
   * Sent before the delete goes out, naming what this device saw: a file's revision, or for a
   * folder the cursor of its namespace (nothing changed after it is removed).
   */
  | { kind: "delete-remote"; path: string; revision?: string; blocks?: string[]; seenCursor?: string }
  | { kind: "pending"; files: number; bytes: number }
  /** The shared folder mounted at path was deleted here: this device's account left it (the folder stays for the others). */
  | { kind: "leave"; path: string }
  | { kind: "synced"; uploads: number; downloads: number; problems: number }
  /** A file could not be synced this time; the others went on, and it is tried again at nextRetryAt. */
  | { kind: "problem"; path: string; direction: ProblemDirection; code: string; message: string; attempts: number; nextRetryAt: number }
  | { kind: "error"; message: string };

/** A file that could not be synced, as `status()` reports it. */
export type ProblemFile = SyncProblem & { path: string };

/** A local entry the agent leaves alone (a link, a pipe, a device, a folder it cannot read), and why. */
export interface SkippedEntry {
  path: string;
  reason: string;
}

export interface SyncAgentOptions {
  /** Streams "namespace advanced" from here; without it the agent only rescans and polls. */
  notifyserverUrl?: string;
  /** Token for the notifyserver (the client's own when it has one). */
  notifyToken?: () => Promise<string>;
  /** Full rescans of the folder, besides the file watcher (which can miss events). */
  scanIntervalMs?: number;
  /** Back-off for files that failed (PROBLEM_RETRY unless set). */
  retry?: RetryPolicy;
  onEvent?: (e: SyncEvent) => void;
}

/** A name in a local folder, and what it is. */
type LocalEntry = Pick<Dirent, "name" | "isDirectory" | "isFile" | "isSymbolicLink" | "isFIFO" | "isSocket" | "isBlockDevice" | "isCharacterDevice">;

/**
 * Why an entry that is neither a file nor a folder is not synced. Links are never followed: a link
 * may point outside the folder or at itself (a loop), and following it would upload what the user
 * never put in the folder.
 */
async function whySkipped(entry: LocalEntry, at: string): Promise<string> {
  if (entry.isSymbolicLink()) {
    const target = await stat(at).then(() => "", (err: NodeJS.ErrnoException) => err.code);
    if (target === "ELOOP") return "a symbolic link in a loop (links are not synced)";
    if (target === "ENOENT") return "a symbolic link to nothing (links are not synced)";
    return "a symbolic link (links are not synced)";
  }
  if (entry.isFIFO()) return "a named pipe (only files and folders are synced)";
  if (entry.isSocket()) return "a socket (only files and folders are synced)";
  if (entry.isBlockDevice() || entry.isCharacterDevice()) return "a device (only files and folders are synced)";
  return "not a regular file or folder";
}

interface LocalFile {
  size: number;
  mtimeMs: number;
  ino?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Files uploaded or downloaded at once. */
const TRANSFER_CONCURRENCY = 8;
/**
 * Small files (up to SMALL_FILE_BYTES) sent or fetched at once, beside the others: each is one
 * block and a share of a CommitBatch, bound by round trips rather than bytes or memory (2,000 files
 * of 4 KiB from A: 35 files/s eight at a time, 51 at 32).
 */
const SMALL_TRANSFERS_AT_ONCE = 32;
const SMALL_FILE_BYTES = 1 << 20;

/** Runs fn over items, at most `width` at a time; the first failure is thrown after the others settle. */
async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failure: unknown;
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length && failure === undefined) {
      const item = items[next++];
      await fn(item).catch((err) => (failure ??= err));
    }
  }));
  if (failure !== undefined) throw failure;
}
const codeOf = (err: unknown) => ConnectError.from(err).code;

/**
 * Keeps a local folder and the caller's Satchel tree identical, both ways. A pass pushes local
 * changes first (a commit with a stale parent becomes a conflicted copy on the server, so a
 * local edit is never overwritten) and then applies the journal of every namespace after the
 * stored cursor. Passes run on file-watcher events, on pushes from the notifyserver and on a
 * timer; the state file makes them restartable at any point.
 */
export class SyncAgent {
  private state!: SyncState;
  private watcher?: FSWatcher;
  /** What the last scan left alone, by path. */
  private skipped: SkippedEntry[] = [];
  private timer?: NodeJS.Timeout;
  private readonly stopping = new AbortController();
  private running?: Promise<void>;
  private again = false;
  private debounce?: NodeJS.Timeout;

  constructor(private readonly client: SatchelClient, readonly root: string, private readonly opts: SyncAgentOptions = {}) {}

  private emit(e: SyncEvent): void {
    this.opts.onEvent?.(e);
  }

  /**
   * How each local entry is spelled, by the key the server folds names to (case and Unicode form):
   * a remote path names the local entry of that key whatever its spelling, so the agent never makes
   * a twin ("Docs" beside "docs", an NFC name beside its NFD form, as macOS writes them) of what
   * the server holds as one. Rebuilt by every scan; fold key -> local path from the root.
   */
  private spellings = new Map<string, string>();

  /** Where a remote path lives in the local folder (the existing entry of its key, however spelled). */
  private local(path: string): string {
    for (let p = path; p !== "/" && p !== ""; p = parentPath(p)) {
      const spelled = this.spellings.get(foldKey(p));
      if (spelled !== undefined) return join(this.root, ...`${spelled}${path.slice(p.length)}`.split("/").filter(Boolean));
    }
    return join(this.root, ...path.split("/").filter(Boolean));
  }

  /**
   * The local folder for a remote one, made where missing. Each level uses the folder there of the
   * same key whatever its spelling (the scan's record may be stale: the user may have renamed it
   * since), so a download never makes a twin of a folder the user just renamed in case.
   */
  private async localDir(remote: string): Promise<string> {
    const direct = this.local(remote);
    if ((await stat(direct).catch(() => undefined))?.isDirectory()) return direct;
    let actual = this.root;
    let spelled = "";
    let path = "";
    for (const name of remote.split("/").filter(Boolean)) {
      path += `/${name}`;
      const here = (await readdir(actual, { withFileTypes: true }).catch(() => [])).find((d) => foldKey(d.name) === foldKey(name));
      const local = here?.name ?? name;
      if (!here) await mkdir(join(actual, local)).catch((err: NodeJS.ErrnoException) => { if (err.code !== "EEXIST") throw err; });
      actual = join(actual, local);
      spelled += `/${local}`;
      this.spellings.set(foldKey(path), spelled);
    }
    return actual;
  }

  /**
   * After a local rename of `fromPath` (at local `from`) to `toPath` (at local `to`): what lay under
   * it keeps its own spelling (an NFD name stays NFD) under the new place.
   */
  private respell(fromPath: string, toPath: string, from: string, to: string): void {
    const [fromKey, toKey] = [foldKey(fromPath), foldKey(toPath)];
    const [fromRel, toRel] = [from.slice(this.root.length), to.slice(this.root.length)];
    for (const [k, v] of [...this.spellings]) {
      if (k !== fromKey && !k.startsWith(`${fromKey}/`)) continue;
      this.spellings.delete(k);
      if (v === fromRel || v.startsWith(`${fromRel}/`)) this.spellings.set(`${toKey}${k.slice(fromKey.length)}`, `${toRel}${v.slice(fromRel.length)}`);
    }
  }

  /** Loads the state and runs one full pass (what `satchel sync --once` does). */
  async open(): Promise<void> {
    await mkdir(join(this.root, STATE_DIR), { recursive: true });
    this.state = await SyncState.open(join(this.root, STATE_DIR, "state.json"));
  }

  /** Starts syncing continuously: a first pass, then on changes (local or remote) and on a timer. */
  async start(): Promise<void> {
    await this.open();
    // A first pass that fails (the services down, a folder unreadable) is tried again by the timer:
    // the agent runs on.
    await this.syncNow().catch((err: Error) => this.emit({ kind: "error", message: err.message }));
    this.watchFolder();
    this.timer = setInterval(() => this.schedule(), this.opts.scanIntervalMs ?? 30_000);
    if (this.opts.notifyserverUrl) void this.listen(this.opts.notifyserverUrl);
  }

  /**
   * Watches the folder for changes. The recursive watcher reports entries it cannot follow (a
   * symbolic link in a loop gives ELOOP, at start and whenever one appears) and goes on watching
   * the rest: that must never end the agent, so the failure is reported and a scan runs (the
   * periodic scan covers whatever the watcher misses). A watcher that cannot start at all is tried
   * again later.
   */
  private watchFolder(): void {
    if (this.stopping.signal.aborted) return;
    try {
      this.watcher = watch(this.root, { recursive: true }, (_event, name) => {
        if (name && (name.startsWith(STATE_DIR) || isIgnored(`/${name.toString().split("\\").join("/")}`))) return;
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => this.schedule(), 100);
      });
    } catch (err) {
      this.emit({ kind: "error", message: `watching ${this.root}: ${(err as Error).message}; the periodic scan goes on` });
      this.rewatch = setTimeout(() => this.watchFolder(), 5_000);
      return;
    }
    this.watcher.on("error", (err) => {
      this.emit({ kind: "error", message: `watching ${this.root}: ${err.message}` });
      this.schedule();
    });
  }

  private rewatch?: NodeJS.Timeout;

  async stop(): Promise<void> {
    this.stopping.abort();
    this.watcher?.close();
    clearTimeout(this.rewatch);
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    await this.running?.catch(() => undefined);
  }

  /** Runs a pass soon; passes never overlap, and a request during one runs another after it. */
  schedule(): void {
    if (this.stopping.signal.aborted) return;
    if (this.running) {
      this.again = true;
      return;
    }
    void this.syncNow().catch((err: Error) => this.emit({ kind: "error", message: err.message }));
  }

  /** One or more passes until nothing asked for another; resolves when done. */
  syncNow(): Promise<void> {
    this.running ??= (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again && !this.stopping.signal.aborted);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Hears namespace advances on a Subscribe stream, reconnecting (with back-off) when it drops. */
  private async listen(url: string): Promise<void> {
    const token = this.opts.notifyToken;
    const notify: Client<typeof NotifyService> = createClient(NotifyService, createSatchelTransport({ baseUrl: url, token, ca: this.client.ca }));
    let backoff = 500;
    while (!this.stopping.signal.aborted) {
      let waitMs = backoff;
      try {
        for await (const ev of notify.subscribe({}, { signal: this.stopping.signal })) {
          backoff = 500;
          if (ev.event.case === "advanced" && ev.event.value.cursor > this.state.cursor(ev.event.value.namespaceId)) this.schedule();
          if (ev.event.case === "draining") waitMs = ev.event.value.reconnectAfterMs;
        }
      } catch (err) {
        if (this.stopping.signal.aborted) return;
        this.emit({ kind: "error", message: `notifications: ${(err as Error).message}; reconnecting` });
        backoff = Math.min(backoff * 2, 30_000);
      }
      await sleep(waitMs);
      // Whatever happened while disconnected is in the journal: catch up from the cursors.
      this.schedule();
    }
  }

  private async pass(): Promise<void> {
    const counts = { uploads: 0, downloads: 0 };
    const { files, folders } = await this.scan({ sweepPartials: true });
    await this.push(files, folders, counts);
    await this.pull(counts);
    await this.state.save();
    this.emit({ kind: "synced", ...counts, problems: this.state.problems.length });
  }

  /**
   * Runs one file's transfer. A failure that is about this file (a status from a service about it,
   * a local I/O error) becomes a problem for its path, retried with back-off, and the pass goes on;
   * one that is about the pass (credentials, a service that does not answer) fails it as before.
   */
  private async perFile(path: string, direction: ProblemDirection, context: Pick<SyncProblem, "revision" | "local">, transfer: () => Promise<void>): Promise<boolean> {
    try {
      await transfer();
      return true;
    } catch (err) {
      const scope = failureScope(err);
      if (scope === "pass" || this.stopping.signal.aborted) throw err;
      if (scope === "check-services") await this.servicesAnswer();
      const problem = recordFailure(this.state.problem(path), { direction, ...failureCause(err), ...context }, Date.now(), this.opts.retry ?? PROBLEM_RETRY);
      this.state.setProblem(path, problem);
      const { code, message, attempts, nextRetryAt } = problem;
      this.emit({ kind: "problem", path, direction, code, message, attempts, nextRetryAt });
      return false;
    }
  }

  /** One check at a time, shared by every file that failed meanwhile. */
  private servicesCheck?: Promise<void>;

  /**
   * Throws when the metaserver or the blockserver does not answer the caller at all, so that an
   * outage fails the pass (cursors stay put) instead of being pinned on every file. Only failures
   * pay for it; the two calls are the cheapest each service has.
   */
  private servicesAnswer(): Promise<void> {
    this.servicesCheck ??= Promise.all([this.client.meta.listNamespaces({}), this.client.blocks.hasBlocks({ hashes: [] })])
      .then(() => undefined)
      .finally(() => (this.servicesCheck = undefined));
    return this.servicesCheck;
  }

  /**
   * Every file and folder under the root, by remote path (ignored names and partial downloads left
   * out). A pass's scan also removes the temporary files of downloads this agent no longer runs (a
   * killed process leaves them; passes never overlap, so none is in flight then), which would
   * otherwise stay for good and keep their folder from ever being empty.
   */
  private async scan(opts: { sweepPartials?: boolean } = {}): Promise<{ files: Map<string, LocalFile>; folders: Set<string> }> {
    const files = new Map<string, LocalFile>();
    const folders = new Set<string>();
    const spellings = new Map<string, string>();
    const skipped: SkippedEntry[] = [];
    const walk = async (dir: string, prefix: string, spelledPrefix: string) => {
      const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
        if (prefix === "") throw err;
        // A folder it cannot read is not an empty folder: what was synced in it stays as it was
        // (nothing there is deleted on the server), and status says why it is not synced.
        skipped.push({ path: prefix, reason: `a folder that cannot be read (${err.code ?? err.message})` });
        for (const [p, synced] of this.state.files) if (p.startsWith(`${prefix}/`)) files.set(p, { size: synced.size, mtimeMs: synced.mtimeMs, ino: synced.ino });
        for (const f of this.state.folders) if (f.startsWith(`${prefix}/`)) folders.add(f);
        return undefined;
      });
      if (!entries) return;
      for (const d of await this.withoutTwins(dir, prefix, entries)) {
        const name = d.name.normalize("NFC");
        const path = `${prefix}/${name}`;
        const spelled = `${spelledPrefix}/${d.name}`;
        if (opts.sweepPartials && d.isFile() && isPartialDownload(d.name)) await rm(join(dir, d.name), { force: true });
        if (path === `/${STATE_DIR}` || isIgnored(path)) continue;
        if (!spellings.has(foldKey(path))) spellings.set(foldKey(path), spelled);
        if (d.isDirectory()) {
          folders.add(path);
          await walk(join(dir, d.name), path, spelled);
        } else if (d.isFile()) {
          const s = await stat(join(dir, d.name)).catch(() => undefined);
          if (s) files.set(path, { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino });
        } else {
          skipped.push({ path, reason: await whySkipped(d, join(dir, d.name)) });
        }
      }
    };
    await walk(this.root, "", "");
    this.spellings = spellings;
    this.skipped = skipped.sort((a, b) => (a.path < b.path ? -1 : 1));
    // An agent from before names were ignored both ways may have synced some: they are forgotten
    // here (never deleted on the server, whatever happens to them locally).
    for (const [path] of this.state.files) if (isIgnored(path)) this.state.setFile(path, undefined);
    return { files, folders };
  }

  /**
   * Names in one local folder that the server takes as one ("Docs" and "docs", an NFC name and its
   * NFD form): a user can make them on a case-sensitive disk, and so can a download racing a local
   * rename. The one this device synced (or else the first in order) keeps its name; each other one is
   * renamed "<name> (case conflict)" and syncs as an entry of its own, as Dropbox does.
   */
  private async withoutTwins(dir: string, prefix: string, entries: Dirent[]): Promise<LocalEntry[]> {
    const byKey = new Map<string, Dirent[]>();
    for (const d of entries) {
      const key = foldKey(d.name);
      const group = byKey.get(key);
      if (group) group.push(d);
      else byKey.set(key, [d]);
    }
    if (byKey.size === entries.length) return entries;
    const known = (d: Dirent) => {
      const path = `${prefix}/${d.name.normalize("NFC")}`;
      return this.state.file(path) !== undefined || this.state.folders.has(path);
    };
    const out: LocalEntry[] = [];
    const taken = new Set(byKey.keys());
    for (const group of [...byKey.values()]) {
      group.sort((a, b) => Number(known(b)) - Number(known(a)) || (a.name < b.name ? -1 : 1));
      out.push(group[0]);
      for (const twin of group.slice(1)) {
        const dot = twin.isFile() ? twin.name.lastIndexOf(".") : -1;
        const [stem, ext] = dot > 0 ? [twin.name.slice(0, dot), twin.name.slice(dot)] : [twin.name, ""];
        for (let n = 1; n < 100; n++) {
          const name = `${stem} (case conflict${n > 1 ? ` ${n}` : ""})${ext}`;
          if (taken.has(foldKey(name)) || (await lstat(join(dir, name)).catch(() => undefined))) continue;
          await rename(join(dir, twin.name), join(dir, name));
          this.emit({ kind: "conflict", path: `${prefix}/${twin.name.normalize("NFC")}`, to: `${prefix}/${name.normalize("NFC")}` });
          taken.add(foldKey(name));
          out.push({
            name, isDirectory: () => twin.isDirectory(), isFile: () => twin.isFile(), isSymbolicLink: () => twin.isSymbolicLink(),
            isFIFO: () => twin.isFIFO(), isSocket: () => twin.isSocket(), isBlockDevice: () => twin.isBlockDevice(), isCharacterDevice: () => twin.isCharacterDevice(),
          });
          break;
        }
      }
    }
    return out;
  }

  private changed(path: string, now: LocalFile | undefined): boolean {
    const synced = this.state.file(path);
    return !synced || !now || synced.size !== now.size || synced.mtimeMs !== now.mtimeMs;
  }

  /** Whether a local change is to be sent now: not while its last failure's back-off runs, unless the file changed since. */
  private uploadDue(path: string, now: LocalFile | undefined, at: number): boolean {
    const problem = this.state.problem(path);
    if (problem?.direction !== "upload") return true;
    const edited = now !== undefined && (problem.local?.size !== now.size || problem.local?.mtimeMs !== now.mtimeMs);
    return edited || isDue(problem, at);
  }

  /** Sends local changes: new and edited files, deletions, new and removed folders. */
  private async push(files: Map<string, LocalFile>, folders: Set<string>, counts: { uploads: number }): Promise<void> {
    this.recordFoldersOfFiles();
    const vanished = this.state.files.some(([p]) => !files.has(p)) || [...this.state.folders].some((f) => !folders.has(f));
    const inMount = (p: string) => p.indexOf("/", 1) > 0;
    const mounts = vanished || [...files].some(([p, f]) => inMount(p) && this.changed(p, f)) ? (await this.client.meta.listNamespaces({})).namespaces : [];
    await this.setAsideOwnFolders(mounts, files, folders);
    await this.pushLeaves(mounts, files, folders);
    await this.setAsideViewOnly(files, folders, mounts);
    await this.pushRespellings(folders);
    await this.pushMoves(files, folders);
    // Outermost first: a folder that takes the server's spelling takes its new folders with it.
    const fresh = [...folders].filter((f) => !this.state.folders.has(f)).sort();
    for (let i = 0; i < fresh.length; i++) {
      const folder = fresh[i];
      const made = await this.client.meta.createFolder({ path: folder }).then(() => true, (err) => {
        // Refused in a folder shared with this account as a viewer: it stays a local folder only.
        if (![Code.AlreadyExists, Code.PermissionDenied].includes(codeOf(err))) throw err;
        return false;
      });
      // There already (in any case), or refused to a viewer (who may have renamed it in case).
      const renamed = made ? undefined : await this.adoptServerSpelling(folder, files, folders);
      if (renamed !== undefined) for (let j = i + 1; j < fresh.length; j++) if (fresh[j].startsWith(`${folder}/`)) fresh[j] = `${renamed}${fresh[j].slice(folder.length)}`;
    }
    const at = Date.now();
    const edits = [...files].filter(([path, f]) => this.changed(path, f) && this.uploadDue(path, f, at));
    if (edits.length > 0) this.emit({ kind: "pending", files: edits.length, bytes: edits.reduce((n, [, f]) => n + f.size, 0) });
    // Upload request ids are made from the device's key: saved before the first one is sent.
    if (edits.length > 0 && this.state.ensureDeviceKey()) await this.state.save();
    // Several files at once: small files are bound by round trips, not bytes (many more of them at once).
    const upload = ([path, f]: [string, LocalFile]) => this.perFile(path, "upload", { local: f }, async () => {
      const synced = this.state.file(path);
      // The synced version's blocks are the parent's: the server has them and knows we may use them.
      const { file, conflict, progress } = await this.client.uploadAs(
        this.local(path), path, BigInt(synced?.revision ?? "0"),
        (blocks) => this.state.uploadRequestId(path, BigInt(synced?.revision ?? "0"), f, blocks.map((b) => b.hash)),
        undefined, synced?.blocks.map(([hex]) => hex),
      );
      counts.uploads++;
      this.state.setProblem(path, undefined);
      const record = { revision: file.revision.toString(), size: f.size, mtimeMs: f.mtimeMs, ino: f.ino, cursor: file.cursor.toString(), blocks: file.blocks.map((b): [string, number] => [Buffer.from(b.hash).toString("hex"), b.size]) };
      this.emit({
        kind: "upload", path: file.path, bytes: progress.bytesTransferred, revision: record.revision,
        parentRevision: synced?.revision ?? "0", blocks: record.blocks.map(([hex]) => hex),
      });
      if (!conflict) {
        this.state.setFile(path, record);
        return;
      }
      // Someone else changed the file first: ours is now the conflicted copy on the server. Keep
      // it locally under that name too; the winner comes down to the original name in pull().
      this.emit({ kind: "conflict", path, to: file.path });
      await this.localDir(parentPath(file.path));
      await rename(this.local(path), this.local(file.path));
      // A rename keeps the inode and the mtime: the record is the file as it was read for the
      // upload, so a user's write during the upload (or since) differs and is sent next.
      this.state.setFile(file.path, record);
      this.state.setFile(path, undefined);
      files.delete(path);
      files.set(file.path, f);
      // The journal may have offered the winner already (not taken then, over this unsent edit).
      this.state.followUp("refetch", path);
    });
    const uploaded = await Promise.allSettled([
      inParallel(edits.filter(([, f]) => f.size <= SMALL_FILE_BYTES), SMALL_TRANSFERS_AT_ONCE, upload),
      inParallel(edits.filter(([, f]) => f.size > SMALL_FILE_BYTES), TRANSFER_CONCURRENCY, upload),
    ]);
    for (const u of uploaded) if (u.status === "rejected") throw u.reason;
    const gone: [string, SyncedFile][] = [];
    for (const [path, synced] of this.state.files) {
      if (files.has(path) || isIgnored(path) || !this.uploadDue(path, undefined, at)) continue;
      if (this.viewerOf(path, mounts)) {
        // A viewer cannot delete what is shared with them: the server's version comes back.
        this.state.setFile(path, undefined);
        this.state.followUp("refetch", path);
        continue;
      }
      gone.push([path, synced]);
    }
    // Gone locally: delete remotely, unless it changed there meanwhile (then it comes back). Several
    // at once, so the SDK sends them together in a CommitBatch.
    await inParallel(gone, TRANSFER_CONCURRENCY, ([path, synced]) => {
      return this.perFile(path, "upload", {}, async () => {
        this.emit({ kind: "delete-remote", path, revision: synced.revision, blocks: synced.blocks.map(([hex]) => hex) });
        await this.client.remove({ path, parentRevision: BigInt(synced.revision), seenCursor: 0n }).catch((err) => {
          if (![Code.NotFound, Code.FailedPrecondition].includes(codeOf(err))) throw err;
          // Changed there since this device saw it: that version comes back here (the journal may
          // have offered it already, and it was not taken then over the local copy).
          if (codeOf(err) === Code.FailedPrecondition) this.state.followUp("refetch", path);
        });
        this.state.setFile(path, undefined);
        this.state.setProblem(path, undefined);
      });
    });
    // A file that failed to upload and is gone now, never synced: nothing is left to send.
    for (const [path, problem] of this.state.problems) {
      if (problem.direction === "upload" && !files.has(path) && !this.state.file(path)) this.state.setProblem(path, undefined);
    }
    const removed = [...this.state.folders].filter((f) => !folders.has(f)).sort().reverse();
    for (const folder of removed) {
      if ([...files.keys()].some((p) => p.startsWith(`${folder}/`))) continue;
      if (this.viewerOf(folder, mounts) || mounts.some((m) => m.path === folder)) {
        // Not this account's to delete (a viewer's folder, or the root of a mount): it comes back,
        // if the server has it (a viewer's own folder there never reached it).
        const onServer = mounts.some((m) => m.path === folder) || (await this.client.currentVersion(folder))?.isFolder;
        if (onServer) {
          await this.localDir(folder);
          folders.add(folder);
        }
        continue;
      }
      // A folder delete names what this device saw (its cursor in the folder's namespace): whatever
      // another device created or changed in it since survives, with the folder, and comes back here
      // on the next pull.
      const seenCursor = this.seenCursorFor(folder, mounts);
      if (seenCursor === 0n) continue;
      this.emit({ kind: "delete-remote", path: folder, seenCursor: seenCursor.toString() });
      const res = await this.client.meta.delete({ path: folder, seenCursor }).catch((err) => {
        if (![Code.NotFound, Code.FailedPrecondition].includes(codeOf(err))) throw err;
      });
      // The server kept the folder, for what it holds that this device never had (a name it
      // ignores, a change after its cursor): it comes back here, with its folders, at the pull's end.
      if (res && res.entriesKept > 0n) this.state.followUp("relist", folder);
    }
    this.state.setFolders(folders);
  }

  /**
   * A folder new here that the server already holds in another case is that folder: the local one
   * takes the server's spelling, so every device shows one name. (A rename this device saw, from a
   * name it had synced, goes the other way, as a move: see pushRespellings.) Without this a device
   * would keep "D1" beside every other device's "d1" for good, each taken by the server as the other.
   */
  private async adoptServerSpelling(folder: string, files: Map<string, LocalFile>, folders: Set<string>): Promise<string | undefined> {
    const server = await this.client.currentVersion(folder);
    if (!server?.isFolder || server.isDeleted || foldKey(server.path) !== foldKey(folder)) return undefined;
    const renamed = `${parentPath(folder) === "/" ? "" : parentPath(folder)}/${baseName(server.path)}`;
    // The same name (an NFD name is kept as written), or one differing only above this folder.
    if (renamed === folder || !(await this.takeServerCase(server.path))) return undefined;
    const moved = rekeyScan(folder, renamed, files, folders);
    // What this device synced in it, recorded as spelled here, is the same files under the new spelling.
    for (const [p, synced] of this.state.files.filter(([p]) => p === folder || p.startsWith(`${folder}/`))) {
      this.state.setFile(p, undefined);
      this.state.setFile(moved(p), synced);
    }
    return renamed;
  }

  /**
   * Renames the local folder of `serverPath`'s key to the server's spelling of its last name, where
   * the two differ in case (an NFD name differing only in form keeps its form). Whether it did.
   */
  private async takeServerCase(serverPath: string): Promise<boolean> {
    const from = this.local(serverPath);
    const [here, name] = [basename(from), baseName(serverPath)];
    if (here.normalize("NFC") === name || foldKey(here) !== foldKey(name)) return false;
    const to = join(dirname(from), name);
    if (!(await lstat(from).catch(() => undefined))?.isDirectory() || (await lstat(to).catch(() => undefined))) return false;
    await rename(from, to);
    this.respell(serverPath, serverPath, from, to);
    const spelled = (at: string) => `/${relative(this.root, at).split(sep).join("/")}`.normalize("NFC");
    this.emit({ kind: "move-local", path: spelled(from), to: spelled(to) });
    return true;
  }

  /**
   * The folders above every synced file are synced folders (the server had them when the file
   * came or went): a folder made here only by a download or a move into it is recorded too, so a
   * local delete or rename of it goes to the server as one (and a folder the server then keeps,
   * for what this device never had in it, comes back).
   */
  private recordFoldersOfFiles(): void {
    const folders = this.state.folders;
    // By the server's key: a folder recorded in another case is the same folder.
    const known = new Set([...folders].map(foldKey));
    const missing: string[] = [];
    for (const [path] of this.state.files) {
      for (let p = parentPath(path); p !== "/" && !known.has(foldKey(p)); p = parentPath(p)) {
        known.add(foldKey(p));
        missing.push(p);
      }
    }
    if (missing.length > 0) this.state.setFolders([...folders, ...missing]);
  }

  /** Whether `path` lies in a folder shared with this account as a viewer (who cannot change it). */
  private viewerOf(path: string, mounts: { path: string; role: Role }[]): boolean {
    return mounts.some((m) => m.role === Role.VIEWER && path.startsWith(`${m.path}/`));
  }

  /**
   * Where the folder mounted at `mountPath`, gone from its place, went locally: a new folder (outside
   * any shared folder) holding a file this device synced in the mount at the same relative path, with its inode
   * and content.
   */
  private async mountRenamedTo(mountPath: string, files: Map<string, LocalFile>, folders: Set<string>, mounts: { path: string }[]): Promise<string | undefined> {
    const synced = new Map(this.state.files.filter(([p, f]) => p.startsWith(`${mountPath}/`) && f.ino !== undefined).map(([p, f]) => [f.ino!, [p, f] as const]));
    for (const [path, f] of files) {
      const was = f.ino === undefined || this.state.file(path) ? undefined : synced.get(f.ino);
      if (!was) continue;
      const rel = was[0].slice(mountPath.length);
      if (!path.endsWith(rel)) continue;
      const to = path.slice(0, path.length - rel.length);
      // A mount may sit anywhere in the account's own tree, never inside another shared folder.
      const fresh = to !== "" && folders.has(to) && !this.state.folders.has(to) && !mounts.some((m) => m.path !== "/" && (to === m.path || to.startsWith(`${m.path}/`)));
      if (fresh && was[1].size === f.size && (await this.holdsBlocks(this.local(path), was[1].blocks, f.size).catch(() => false))) return to;
    }
    return undefined;
  }

  /**
   * A viewer's local edits and new files in a folder shared with them can never be sent there: as
   * Dropbox does, each is moved to "<folder> (view only conflicts)" beside the mount, in the
   * account's own tree (so it is kept, and syncs to the account's other devices), and the server's
   * version of an edited file comes back to its place.
   */
  private async setAsideViewOnly(files: Map<string, LocalFile>, folders: Set<string>, mounts: { path: string; role: Role }[]): Promise<void> {
    for (const [path, f] of [...files]) {
      const mount = mounts.find((m) => m.role === Role.VIEWER && path.startsWith(`${m.path}/`));
      if (!mount || !this.changed(path, f)) continue;
      const rel = path.slice(mount.path.length);
      let aside = `${mount.path} (view only conflicts)${rel}`;
      for (let n = 2; files.has(aside) || (await lstat(this.local(aside)).catch(() => undefined)); n++) {
        aside = `${mount.path} (view only conflicts ${n})${rel}`;
      }
      await this.localDir(parentPath(aside));
      await rename(this.local(path), this.local(aside));
      // Its local spelling is gone with it: the server's version comes back under the server's
      // name (a viewer's case-only rename set aside must not make the download land in the new case).
      this.spellings.delete(foldKey(path));
      this.emit({ kind: "conflict", path, to: aside });
      files.delete(path);
      files.set(aside, f);
      for (let p = parentPath(aside); p !== "/"; p = parentPath(p)) folders.add(p);
      if (this.state.file(path)) {
        this.state.setFile(path, undefined);
        this.state.followUp("refetch", path);
      }
      this.state.setProblem(path, undefined);
    }
    // What a viewer deleted or renamed there comes back (a rename's new name was set aside above).
    for (const [path] of this.state.files) {
      if (files.has(path) || !this.viewerOf(path, mounts)) continue;
      this.state.setFile(path, undefined);
      this.state.followUp("refetch", path);
    }
    // A viewer's new folders there, emptied of their files above, go aside too (deepest first): the
    // shared folder never gets them, so they would stay here and nowhere else.
    for (const folder of [...folders].sort().reverse()) {
      const mount = mounts.find((m) => m.role === Role.VIEWER && folder.startsWith(`${m.path}/`));
      if (!mount) continue;
      if ((await readdir(this.local(folder)).catch(() => [""])).length > 0) continue;
      // An empty folder of the shared folder's own stays (asked of the server: this device may have
      // recorded the viewer's folder as synced in a pass that met it still holding a file).
      const onServer = await this.client.currentVersion(folder);
      if (onServer?.isFolder && !onServer.isDeleted) continue;
      const aside = `${mount.path} (view only conflicts)${folder.slice(mount.path.length)}`;
      await this.localDir(aside);
      await rmdir(this.local(folder)).catch(() => undefined);
      this.spellings.delete(foldKey(folder));
      folders.delete(folder);
      for (let p = aside; p !== "/"; p = parentPath(p)) folders.add(p);
    }
  }

  /**
   * A folder of the user's own where a shared folder is now mounted (made here before this device
   * ever synced the mount, e.g. while the agent was not running): what it holds is the user's, not
   * the folder's members', so it is renamed "<name> (2)" (or the next free number) and syncs into
   * the account's own tree; the mount comes down in its place.
   */
  private async setAsideOwnFolders(mounts: { namespaceId: bigint; path: string; role: Role }[], files: Map<string, LocalFile>, folders: Set<string>): Promise<void> {
    for (const m of mounts) {
      // The owner's own folder is the shared folder (its unsent files belong there).
      // A mount this device synced before (a cursor, or one recorded before it came down) is the mount.
      const synced = this.state.cursor(m.namespaceId) !== 0n || this.state.mounts.some(([id]) => id === m.namespaceId);
      if (m.path === "/" || m.role === Role.OWNER || synced || !folders.has(m.path)) continue;
      const own = [...files.keys()].filter((p) => within(p, m.path) && !this.state.file(p));
      if (own.length === 0) continue;
      let aside = "";
      for (let n = 2; !aside || folders.has(aside) || (await lstat(this.local(aside)).catch(() => undefined)); n++) aside = `${m.path} (${n})`;
      await rename(this.local(m.path), join(dirname(this.local(m.path)), aside.slice(aside.lastIndexOf("/") + 1)));
      this.emit({ kind: "conflict", path: m.path, to: aside });
      rekeyScan(m.path, aside, files, folders);
      this.spellings.clear();
    }
  }

  /**
   * A shared folder of someone else's deleted here means leaving it, as in Dropbox: the account's
   * mount goes (on its other devices too), and the folder and everything in it stay for the owner
   * and the other members. Nothing under it is deleted on the server, and this device forgets it.
   */
  private async pushLeaves(mounts: { namespaceId: bigint; path: string; role: Role }[], files: Map<string, LocalFile>, folders: Set<string>): Promise<void> {
    const under = (p: string, root: string) => p === root || p.startsWith(`${root}/`);
    for (const m of mounts) {
      if (m.path === "/" || m.role === Role.OWNER || folders.has(m.path)) continue;
      // Only a folder this device had: a mount it never made locally is not a delete.
      const had = this.state.folders.has(m.path) || this.state.files.some(([p]) => under(p, m.path));
      if (!had) continue;
      // Renamed rather than deleted: the mount moves (the server renames it in this account's tree
      // only), and what else changed in it syncs as usual from the new place.
      const renamedTo = await this.mountRenamedTo(m.path, files, folders, mounts);
      if (renamedTo !== undefined && (await this.moveRemote(m.path, renamedTo))) continue;
      this.emit({ kind: "leave", path: m.path });
      await this.client.meta.leaveSharedFolder({ path: m.path }).catch((err) => {
        // Left already (from another device), or the owner removed this account meanwhile.
        if (![Code.NotFound, Code.FailedPrecondition].includes(codeOf(err))) throw err;
      });
      for (const [p] of this.state.files) if (under(p, m.path)) this.state.setFile(p, undefined);
      for (const [p] of this.state.problems) if (under(p, m.path)) this.state.setProblem(p, undefined);
      this.state.applied(m.path);
      this.state.setFolders([...this.state.folders].filter((f) => !under(f, m.path)));
      this.state.forgetCursor(m.namespaceId);
    }
  }

  /**
   * Local renames and moves go to the server as moves, so that what other devices changed inside
   * meanwhile follows them to the new name. A synced file that vanished and a new file with its
   * inode, size and mtime and the synced content are one file renamed; a vanished folder whose files all reappear under one
   * new folder, at the same relative paths, moved as a whole (one Move of the folder). A move the
   * server refuses (the source gone or moved elsewhere, the target taken) falls back to an upload of
   * the new path and a delete of what this device saw at the old one: nothing is lost either way.
   */
  private async pushMoves(files: Map<string, LocalFile>, folders: Set<string>): Promise<void> {
    const vanished = new Map<number, string>();
    for (const [path, synced] of this.state.files) if (!files.has(path) && synced.ino !== undefined) vanished.set(synced.ino, path);
    if (vanished.size === 0) return;
    const moves: [string, string][] = [];
    for (const [path, f] of files) {
      if (this.state.file(path) || f.ino === undefined) continue;
      const from = vanished.get(f.ino);
      const synced = from === undefined ? undefined : this.state.file(from);
      if (from === undefined || !synced || synced.size !== f.size || synced.mtimeMs !== f.mtimeMs) continue;
      // Inode, size and mtime only suggest a rename: a file system reuses a freed inode, and a new
      // file of the old one's size written within the clock's resolution would pass as it, its new
      // bytes never sent. The content must be what was synced (one read of a file that moved).
      if (await this.holdsBlocks(this.local(path), synced.blocks, f.size).catch(() => false)) moves.push([from, path]);
    }
    if (moves.length === 0) return;
    const movedTo = new Map(moves);
    const folderMoves: [string, string][] = [];
    const within = (path: string, folder: string) => path.startsWith(`${folder}/`);
    for (const oldFolder of [...this.state.folders].filter((f) => !folders.has(f)).sort()) {
      if (folderMoves.some(([f]) => within(oldFolder, f))) continue;
      const synced = this.state.files.map(([p]) => p).filter((p) => within(p, oldFolder));
      const first = synced.map((p) => [p, movedTo.get(p)] as const).find(([, to]) => to !== undefined);
      if (!first) continue;
      const rel = first[0].slice(oldFolder.length);
      if (!first[1]!.endsWith(rel)) continue;
      const newFolder = first[1]!.slice(0, first[1]!.length - rel.length);
      if (!folders.has(newFolder) || this.state.folders.has(newFolder)) continue;
      if (!synced.every((p) => movedTo.get(p) === `${newFolder}${p.slice(oldFolder.length)}`)) continue;
      folderMoves.push([oldFolder, newFolder]);
    }
    for (const [from, to] of folderMoves) await this.moveRemote(from, to);
    for (const [from, to] of moves) if (!folderMoves.some(([f]) => within(from, f))) await this.moveRemote(from, to);
  }

  /**
   * A folder renamed only in case (or Unicode form) is the same folder on the server, where a new
   * folder of that name cannot be made beside it: it goes as a Move, outermost first, and what it
   * holds follows.
   */
  private async pushRespellings(folders: Set<string>): Promise<void> {
    for (;;) {
      const gone = [...this.state.folders].filter((f) => !folders.has(f)).sort();
      if (gone.length === 0) return;
      const fresh = new Map([...folders].filter((f) => !this.state.folders.has(f)).map((f) => [foldKey(f), f]));
      const old = gone.find((f) => fresh.has(foldKey(f)));
      if (old === undefined) return;
      const now = fresh.get(foldKey(old));
      // Refused (gone or moved on the server meanwhile): the next pull says what became of it.
      if (!(await this.moveRemote(old, now!))) this.state.setFolders([...this.state.folders].filter((f) => f !== old && !f.startsWith(`${old}/`)));
    }
  }

  /** One Move on the server, and the state's record of everything under the old path re-keyed. */
  private async moveRemote(from: string, to: string): Promise<boolean> {
    try {
      await this.client.meta.move({ fromPath: from, toPath: to });
    } catch (err) {
      if ([Code.NotFound, Code.AlreadyExists, Code.FailedPrecondition, Code.InvalidArgument, Code.PermissionDenied].includes(codeOf(err))) return false;
      throw err;
    }
    this.emit({ kind: "move-remote", path: from, to });
    const under = (p: string) => p === from || p.startsWith(`${from}/`);
    for (const [path, synced] of [...this.state.files].filter(([p]) => under(p))) {
      this.state.setFile(path, undefined);
      this.state.setFile(`${to}${path.slice(from.length)}`, synced);
    }
    this.state.setFolders([...this.state.folders].map((f) => (under(f) ? `${to}${f.slice(from.length)}` : f)));
    return true;
  }

  /** This device's cursor in the namespace that holds `path` (the deepest mount above it). */
  private seenCursorFor(path: string, mounts: { namespaceId: bigint; path: string }[]): bigint {
    const holderOf = (p: string) => mounts
      .filter((m) => m.path === "/" || p === m.path || p.startsWith(`${m.path}/`))
      .sort((a, b) => b.path.length - a.path.length)[0];
    const holder = holderOf(path);
    if (!holder) return 0n;
    // The cursor may have passed changes under the folder that this device never applied (a name it
    // ignores, a download that failed): the server must not trash those, so the delete names a
    // point before the earliest of them.
    let seen = this.state.cursor(holder.namespaceId);
    for (const [p, cursor] of this.state.unapplied) {
      // Of any spelling: the folder's name here and the server's may differ in case.
      if (within(p, path) && holderOf(p) === holder && cursor - 1n < seen) seen = cursor - 1n;
    }
    return seen;
  }

  /** Paths deleted in this pull (see pull: a shared folder's mount deleted there has left the account's tree). */
  private readonly unmounted = new Set<string>();

  /** Applies every namespace's journal after the stored cursor. */
  private async pull(counts: { downloads: number }): Promise<void> {
    this.blockIndex = new Map();
    for (const [path, synced] of this.state.files) this.indexBlocks(path, synced);
    const { namespaces } = await this.client.meta.listNamespaces({});
    // The account's own root first: its journal says which shared folders left the account's tree
    // since (a delete of the mount path, when the member left or was removed). Such a folder's own
    // journal is no longer this device's to apply, even if the list above still named it.
    namespaces.sort((a, b) => Number(b.path === "/") - Number(a.path === "/"));
    this.unmounted.clear();
    const dropped = new Set<string>();
    // A shared folder this device synced that is no longer listed has left the account's tree (left
    // from another device, or the member was removed), even if no journal entry says so (the
    // metaserver failed between the two): its path here becomes what the account's own tree holds
    // there (often nothing; an edit sent after the removal, as the account's own).
    for (const [id, path] of this.state.mounts) {
      if (namespaces.some((ns) => ns.namespaceId === id)) continue;
      dropped.add(path);
      this.state.forgetCursor(id);
      await this.resync(path, counts, true, true);
      // Nothing of the account's there: the folder itself goes too, unless it holds what was never sent.
      const now = await this.client.currentVersion(path);
      if (!now || now.isDeleted || !now.isFolder) await this.removeLocal(path);
    }
    for (const ns of namespaces) {
      if (ns.path !== "/" && this.unmounted.has(foldKey(ns.path))) {
        dropped.add(ns.path);
        this.state.forgetCursor(ns.namespaceId);
        continue;
      }
      if (ns.path !== "/" && !this.state.mounts.some(([id, path]) => id === ns.namespaceId && path === ns.path)) {
        // Saved before anything of it comes down: what lies at its path from then on is the mount's
        // (see setAsideOwnFolders), even if this pass is cut short.
        this.state.setMount(ns.namespaceId, ns.path);
        await this.state.save();
      }
      let cursor = this.state.cursor(ns.namespaceId);
      if (ns.path !== "/") {
        // A shared folder's root is in no journal of this account's: a new mount is made here, and a
        // mount root the device has is a synced folder (its deletion is a leave, see pushLeaves).
        if (cursor === 0n) await this.localDir(ns.path);
        if ((await stat(this.local(ns.path)).catch(() => undefined))?.isDirectory()) this.state.setFolders([...this.state.folders, ns.path]);
      }
      for (let page = 0; page < 100_000; page++) {
        const res = await this.client.meta.listDelta({ namespaceId: ns.namespaceId, cursor }).catch((err) => {
          // A shared folder this account stopped being a member of since the list: nothing more of
          // it comes down, and the root's journal tells this device to drop it on the next pass.
          if (ns.path !== "/" && codeOf(err) === Code.PermissionDenied) return undefined;
          throw err;
        });
        if (!res) break;
        if (res.reset) {
          await this.resync(ns.path, counts, true, true);
          this.state.setCursor(ns.namespaceId, res.cursor);
          break;
        }
        // A later put or delete of the same path in this page makes an earlier put moot.
        const lastWrite = new Map<string, number>();
        res.entries.forEach((e, i) => {
          if (e.operation === Operation.PUT || e.operation === Operation.DELETE) lastWrite.set(e.path, i);
        });
        const entries = res.entries.filter((e, i) => e.operation !== Operation.PUT || lastWrite.get(e.path) === i);
        // Runs of puts (distinct paths by now) download in parallel; everything else in order.
        for (let i = 0; i < entries.length;) {
          if (entries[i].operation !== Operation.PUT) {
            await this.apply(entries[i++], counts);
            continue;
          }
          let j = i;
          while (j < entries.length && entries[j].operation === Operation.PUT) j++;
          const run = entries.slice(i, j);
          const small = (e: JournalEntry) => (e.file?.size ?? 0n) <= BigInt(SMALL_FILE_BYTES);
          const applied = await Promise.allSettled([
            inParallel(run.filter(small), SMALL_TRANSFERS_AT_ONCE, (e) => this.apply(e, counts)),
            inParallel(run.filter((e) => !small(e)), TRANSFER_CONCURRENCY, (e) => this.apply(e, counts)),
          ]);
          for (const a of applied) if (a.status === "rejected") throw a.reason;
          i = j;
        }
        cursor = res.cursor;
        this.state.setCursor(ns.namespaceId, cursor);
        await this.state.save();
        if (!res.hasMore) break;
      }
    }
    // Taken now (the state is saved only when the pass ends): whatever is still not done when they
    // run is added again, e.g. a path whose unsent edit is still in the way.
    const followUps = this.state.followUps;
    this.state.doneFollowUps(followUps);
    // Nothing in a shared folder that left the account's tree in this pull is compared again: it is
    // not this device's any more (and a metaserver may still show it for a moment, from its cache).
    for (const kind of ["movedFrom", "movedTo", "refetch", "relist"] as const) {
      followUps[kind] = followUps[kind].filter((p) => ![...dropped].some((m) => within(p, m)));
    }
    try {
      await this.reconcileMoves(followUps, counts);
      await this.relistKept(followUps.relist, counts);
      await this.fetchWinners(followUps.refetch, counts);
    } catch (err) {
      // Not done (a service failed mid-way): every one is kept for the next pass, in this process
      // too. Each is a comparison with the server, so making one again is harmless.
      this.state.keepFollowUps(followUps);
      throw err;
    }
    await this.retryDownloads(counts);
  }

  /** Folders this device deleted that the server kept: made again here, with what the server holds in them. */
  private async relistKept(folders: string[], counts: { downloads: number }): Promise<void> {
    for (const folder of folders) {
      const now = await this.client.currentVersion(folder);
      if (now?.isFolder && !now.isDeleted) {
        await this.localDir(now.path);
        await this.takeServerCase(now.path);
        // Recorded as spelled here (the local folder of that key may still be spelled otherwise).
        const local = relative(this.root, this.local(now.path)).split(sep).join("/");
        this.state.setFolders([...this.state.folders, `/${local}`.normalize("NFC")]);
      }
      await this.resync(folder, counts);
    }
  }

  /** Paths whose server version was not taken: the current one comes down (download skips it again while an unsent edit is there). */
  private async fetchWinners(paths: string[], counts: { downloads: number }): Promise<void> {
    // Not a reason for another pass at once: an edit still in the way waits for its upload (which
    // may be backing off), and the next pass, from a change or the timer, tries again.
    const again = this.again;
    for (const path of paths) {
      const winner = await this.client.currentVersion(path);
      if (winner && !winner.isDeleted && !winner.isFolder) await this.fetchFile(winner, counts);
    }
    this.again = again;
  }

  /**
   * Tries failed downloads again once their back-off has run, from the path's current metadata:
   * the journal has moved on, and the revision that failed may since have been replaced or deleted.
   */
  private async retryDownloads(counts: { downloads: number }): Promise<void> {
    const at = Date.now();
    const due = this.state.problems.filter(([, p]) => p.direction === "download" && isDue(p, at));
    await inParallel(due, TRANSFER_CONCURRENCY, async ([path, problem]) => {
      const wanted = { revision: problem.revision };
      await this.perFile(path, "download", wanted, async () => {
        const current = await this.client.currentVersion(path);
        if (!current || current.isDeleted || current.isFolder) {
          this.state.setProblem(path, undefined);
          this.state.applied(path);
          return;
        }
        wanted.revision = current.revision.toString();
        try {
          await this.download(current, counts);
        } catch (err) {
          this.state.notApplied(path, current.cursor);
          throw err;
        }
      });
    });
  }

  private async apply(e: JournalEntry, counts: { downloads: number }): Promise<void> {
    const target = this.local(e.path);
    switch (e.operation) {
      case Operation.PUT:
        if (e.file) await this.fetchFile(e.file, counts);
        return;
      case Operation.MKDIR:
      case Operation.MOUNT:
        this.unmounted.delete(foldKey(e.path));
        if (isIgnored(e.path)) {
          this.state.notApplied(e.path, e.cursor);
          return;
        }
        await this.localDir(e.path);
        this.state.setFolders([...this.state.folders, e.path]);
        return;
      case Operation.DELETE:
        // At a mount's root (which no one can delete), it means the shared folder left this tree.
        this.unmounted.add(foldKey(e.path));
        this.state.applied(e.path);
        // A local entry of an ignored name is the user's own, never synced: it stays.
        if (!isIgnored(e.path)) await this.removeLocal(e.path);
        return;
      case Operation.MOVE: {
        // A file that failed to come down is still wanted, under its new name.
        for (const [path, problem] of this.state.problems) {
          if (path === e.fromPath || path.startsWith(`${e.fromPath}/`)) {
            this.state.setProblem(path, undefined);
            this.state.setProblem(`${e.path}${path.slice(e.fromPath.length)}`, problem);
          }
        }
        this.state.moveUnapplied(e.fromPath, e.path);
        const from = this.local(e.fromPath);
        // A rename in case or Unicode form only: the entry of that key takes the new spelling.
        const respelled = foldKey(e.fromPath) === foldKey(e.path);
        const to = respelled ? join(dirname(from), e.path.slice(e.path.lastIndexOf("/") + 1)) : target;
        const there = await lstat(from).catch(() => undefined);
        // Both ends are compared with the server when the pull ends: this device may have moved,
        // renamed or rewritten the same things itself meanwhile (see reconcileMoves).
        this.state.followUp("movedFrom", e.fromPath);
        this.state.followUp("movedTo", e.path);
        if (!there) return;
        if (!respelled && await lstat(to).catch(() => undefined)) {
          // Both exist: this device made the move itself and this pull brought changes made at the
          // old path before it (downloaded there just now). They join the moved tree.
          if (there.isDirectory()) {
            await this.mergeInto(e.fromPath, e.path);
          }
          return;
        }
        if (!respelled) await this.localDir(parentPath(e.path));
        if (from !== to) await rename(from, to);
        this.respell(e.fromPath, e.path, from, to);
        this.emit({ kind: "move-local", path: e.fromPath, to: e.path });
        // Whatever was synced under the old path is the same content under the new one, except
        // what this device itself wrote at the old path after the move (it stays there, as on the server).
        for (const [path, synced] of this.state.files) {
          if (path !== e.fromPath && !path.startsWith(`${e.fromPath}/`)) continue;
          const moved = `${e.path}${path.slice(e.fromPath.length)}`;
          if (!respelled && synced.cursor !== undefined && BigInt(synced.cursor) > e.cursor) {
            await this.localDir(parentPath(path));
            await rename(this.local(moved), this.local(path)).catch(() => undefined);
            continue;
          }
          this.state.setFile(path, undefined);
          this.state.setFile(moved, synced);
        }
        this.state.setFolders([...this.state.folders].map((f) => (f === e.fromPath || f.startsWith(`${e.fromPath}/`) ? `${e.path}${f.slice(e.fromPath.length)}` : f)));
        // What the moved folder holds on the server once the journal is applied is the truth: a device
        // whose own changes at the old path raced the move (a conflicted copy, a file written after
        // it) catches up at the end of the pull.
        return;
      }
      default:
        return;
    }
  }

  /**
   * Moves what lies under local `fromPath` into `toPath` (both exist): a file lands where nothing is,
   * replaces an unedited local copy of another revision (the journal's version is the later one),
   * and is dropped where the local copy holds an unsent edit (that edit will meet the journal's
   * version as a conflict on the server, which keeps both).
   */
  private async mergeInto(fromPath: string, toPath: string): Promise<void> {
    const walk = async (rel: string): Promise<void> => {
      for (const d of await readdir(this.local(`${fromPath}${rel}`), { withFileTypes: true }).catch(() => [])) {
        const child = `${rel}/${d.name.normalize("NFC")}`;
        if (d.isDirectory()) {
          await this.localDir(`${toPath}${child}`);
          await walk(child);
          continue;
        }
        const src = `${fromPath}${child}`;
        const dst = `${toPath}${child}`;
        const here = await stat(this.local(dst)).catch(() => undefined);
        const incoming = this.state.file(src);
        const unsentEdit = here !== undefined && this.changed(dst, { size: here.size, mtimeMs: here.mtimeMs });
        if (here && !incoming) {
          // A file of this device's own, never sent, where the moved tree has one too: it stays
          // where it is and is sent from there.
          continue;
        }
        if (here && (unsentEdit || incoming!.revision === this.state.file(dst)?.revision)) {
          await rm(this.local(src), { force: true });
        } else {
          await rename(this.local(src), this.local(dst));
          const moved = await stat(this.local(dst));
          if (incoming) this.state.setFile(dst, { ...incoming, mtimeMs: moved.mtimeMs, ino: moved.ino });
        }
        this.state.setFile(src, undefined);
      }
    };
    await walk("");
    await removeEmptyDirs(this.local(fromPath));
    const under = (f: string) => f === fromPath || f.startsWith(`${fromPath}/`);
    this.state.setFolders([...this.state.folders].filter((f) => !under(f)));
    this.emit({ kind: "move-local", path: fromPath, to: toPath });
  }

  /**
   * The two ends of every move a pull applied, compared with the server once every journal entry is
   * applied (not in the middle of history, where the server's present would run ahead of the entries
   * still to come): the folder a move landed in (the moved folder itself, recursively, or the parent
   * of a moved file) gets what it lacks, and what this device still keeps at the old place that the
   * server no longer has there goes. Things that have moved on or gone since are left alone.
   */
  private async reconcileMoves({ movedFrom, movedTo }: FollowUps, counts: { downloads: number }): Promise<void> {
    const ends = new Map<string, boolean>();
    for (const to of movedTo) {
      // What the server holds there now decides (the device may not have it at all).
      const now = await this.client.meta.getFileMetadata({ path: to }).then((r) => r.file, (err) => {
        if (codeOf(err) !== Code.NotFound) throw err;
        return undefined;
      });
      if (now?.isFolder) {
        ends.set(to, true);
        await this.takeServerCase(now.path);
      }
      else if (!ends.has(parentPath(to))) ends.set(parentPath(to), false);
    }
    for (const from of movedFrom) if (!ends.has(parentPath(from))) ends.set(parentPath(from), false);
    for (const from of movedFrom) if (!movedTo.includes(from)) ends.set(from, true);
    for (const [path, recursive] of ends) await this.resync(path, counts, recursive);
  }

  /** Brings one version down; a failure becomes a problem for its path, retried later, and the pass goes on. */
  private async fetchFile(file: FileMetadata, counts: { downloads: number }): Promise<void> {
    const done = await this.perFile(file.path, "download", { revision: file.revision.toString() }, () => this.download(file, counts));
    // The cursor moves on past it; a folder delete from this device must not.
    if (!done) this.state.notApplied(file.path, file.cursor);
  }

  /** Brings one version down, unless the device has it already or holds an unsent edit of it. */
  private async download(file: FileMetadata, counts: { downloads: number }): Promise<void> {
    const path = file.path;
    if (isIgnored(path)) {
      // Not this device's to sync, either way: never fetched, so never among what it deletes.
      this.state.setProblem(path, undefined);
      this.state.notApplied(path, file.cursor);
      return;
    }
    const synced = this.state.file(path);
    if (synced?.revision === file.revision.toString()) {
      if (this.state.problem(path)?.direction === "download") this.state.setProblem(path, undefined);
      this.state.applied(path);
      return;
    }
    const target = this.local(path);
    const now = await stat(target).catch(() => undefined);
    if (now && this.changed(path, { size: now.size, mtimeMs: now.mtimeMs })) {
      const same = synced === undefined && now.size === Number(file.size) ? await this.sameBlocks(target, file.blocks) : false;
      if (!same) {
        // A local edit not sent yet: the next push sends it (as a conflicted copy if need be), and
        // this version (or a later one) comes down after, unless that edit replaced it.
        this.again = true;
        this.state.followUp("refetch", path);
        this.state.notApplied(path, file.cursor);
        return;
      }
    }
    await this.localDir(parentPath(path));
    // Where the folder is now (localDir may have found it under another spelling).
    const into = this.local(path);
    const read = await stat(into).catch(() => undefined);
    let edited = false;
    // The user may edit (or make) the local file while the download runs: checked again just
    // before the rename, an edit since the check above is never overwritten.
    const beforeReplace = async () => {
      const latest = await stat(into).catch(() => undefined);
      if (read?.size !== latest?.size || read?.mtimeMs !== latest?.mtimeMs || read?.ino !== latest?.ino) {
        edited = true;
        throw new Error(`"${path}" was edited locally during its download`);
      }
    };
    const progress = await this.client.downloadVersion(file, into, { localBlock: (ref) => this.localBlock(ref), beforeReplace }).catch((err) => {
      if (!edited) throw err;
      return undefined;
    });
    if (!progress) {
      // The edit goes up with the revision it was made from as its parent (a conflicted copy beside
      // this version, which comes down afterwards).
      this.again = true;
      this.state.followUp("refetch", path);
      this.state.notApplied(path, file.cursor);
      return;
    }
    // The file as it landed, not as it is now: a user's write just after the rename is an edit to send.
    const written = progress.landed;
    const fresh: SyncedFile = {
      revision: file.revision.toString(), size: written.size, mtimeMs: written.mtimeMs, ino: written.ino, cursor: file.cursor.toString(),
      blocks: file.blocks.map((b): [string, number] => [Buffer.from(b.hash).toString("hex"), b.size]),
    };
    this.state.setFile(path, fresh);
    this.state.setProblem(path, undefined);
    this.state.applied(path);
    this.indexBlocks(path, fresh);
    counts.downloads++;
    this.emit({ kind: "download", path, bytes: progress.bytesTransferred });
  }

  /** Where each block of the synced files sits locally (built once per pull, extended by downloads). */
  private blockIndex = new Map<string, { path: string; offset: number; size: number }>();

  private indexBlocks(path: string, synced: SyncedFile): void {
    let offset = 0;
    for (const [hex, size] of synced.blocks) {
      if (!this.blockIndex.has(hex)) this.blockIndex.set(hex, { path, offset, size });
      offset += size;
    }
  }

  /** A block this device already holds in an unchanged local file, read from there. */
  private async localBlock(ref: BlockRef): Promise<Uint8Array | undefined> {
    const at = this.blockIndex.get(Buffer.from(ref.hash).toString("hex"));
    if (!at) return undefined;
    const now = await stat(this.local(at.path)).catch(() => undefined);
    if (!now || this.changed(at.path, { size: now.size, mtimeMs: now.mtimeMs })) return undefined;
    const handle = await open(this.local(at.path), "r");
    try {
      const buf = Buffer.alloc(at.size);
      await handle.read(buf, 0, at.size, at.offset);
      return buf;
    } finally {
      await handle.close();
    }
  }

  /** Whether a local file holds exactly these blocks (hex hash and size, in order) and nothing else. */
  private async holdsBlocks(localPath: string, blocks: [string, number][], size: number): Promise<boolean> {
    if (blocks.reduce((n, [, s]) => n + s, 0) !== size) return false;
    return this.sameBlocks(localPath, blocks.map(([hex, s]) => ({ hash: Buffer.from(hex, "hex"), size: s })));
  }

  private async sameBlocks(localPath: string, blocks: Pick<BlockRef, "hash" | "size">[]): Promise<boolean> {
    const handle = await open(localPath, "r");
    try {
      let offset = 0;
      for (const b of blocks) {
        const buf = Buffer.alloc(b.size);
        await handle.read(buf, 0, b.size, offset);
        if (!createHash("sha256").update(buf).digest().equals(b.hash)) return false;
        offset += b.size;
      }
      return true;
    } finally {
      await handle.close();
    }
  }

  /** Removes a path deleted remotely, keeping local files edited since the last sync (they are sent again). */
  private async removeLocal(path: string): Promise<void> {
    // Nothing is left to fetch there (a local edit that failed to upload keeps its problem and back-off).
    for (const [p, problem] of this.state.problems) {
      if (problem.direction === "download" && (p === path || p.startsWith(`${path}/`))) this.state.setProblem(p, undefined);
    }
    const target = this.local(path);
    const info = await lstat(target).catch(() => undefined);
    const doomed = this.state.files.filter(([p]) => p === path || p.startsWith(`${path}/`));
    if (!info) {
      // Gone here already: nothing to remove, and nothing synced is left there to remember.
      for (const [p] of doomed) this.state.setFile(p, undefined);
      this.state.setFolders([...this.state.folders].filter((f) => f !== path && !f.startsWith(`${path}/`)));
      return;
    }
    for (const [p] of doomed) {
      const now = await stat(this.local(p)).catch(() => undefined);
      if (now && this.changed(p, { size: now.size, mtimeMs: now.mtimeMs })) {
        this.state.setFile(p, undefined);
        continue;
      }
      await rm(this.local(p), { force: true });
      this.state.setFile(p, undefined);
      this.emit({ kind: "delete-local", path: p });
    }
    if (info.isDirectory()) await removeEmptyDirs(target);
    this.state.setFolders([...this.state.folders].filter((f) => f !== path && !f.startsWith(`${path}/`)));
  }

  /**
   * Makes a subtree match a full listing (after a journal reset, or to reconcile a folder at the
   * pull's end). `historyLost`: the journal will not follow (a reset, a mount that left), so changes
   * not applied here that the listing no longer shows are forgotten. Otherwise they stay: the listing
   * may be ahead of the journal this device has pulled (a folder moved meanwhile is not there any
   * more), and the journal's move or delete carries or clears them when it comes. Forgetting an
   * ignored name's change then let a later folder delete name a seen cursor past it: the server
   * trashed a file this device never had (simulation seed 352).
   */
  private async resync(mountPath: string, counts: { downloads: number }, recursive = true, historyLost = false): Promise<void> {
    const remote = new Map<string, FileMetadata>();
    let pageToken = "";
    try {
      do {
        const page = await this.client.meta.listFolder({ path: mountPath, recursive, pageToken });
        for (const e of page.entries) remote.set(e.path, e);
        pageToken = page.hasMore ? page.nextPageToken : "";
      } while (pageToken);
    } catch (err) {
      // Gone from the server (or never a folder): nothing is there, so nothing synced stays there.
      if (![Code.NotFound, Code.InvalidArgument, Code.FailedPrecondition].includes(codeOf(err))) throw err;
    }
    const inside = (p: string) =>
      recursive ? mountPath === "/" || p.startsWith(`${mountPath}/`) : parentPath(p) === mountPath;
    // The server's spelling of a name this device records in another case or Unicode form is the
    // same entry: the record takes the server's spelling (the local name keeps its own).
    const spelled = new Map([...remote.keys()].map((p) => [foldKey(p), p]));
    for (const [path, synced] of this.state.files) {
      const server = spelled.get(foldKey(path));
      if (server !== undefined && server !== path && inside(path)) {
        this.state.setFile(path, undefined);
        this.state.setFile(server, synced);
      }
    }
    this.state.setFolders([...this.state.folders].map((f) => (inside(f) ? spelled.get(foldKey(f)) ?? f : f)));
    for (const e of remote.values()) {
      if (e.isFolder) {
        // The server's spelling is the folder's name on every device (this device's own rename of it,
        // if any, went up in the push before this).
        await this.localDir(e.path);
        await this.takeServerCase(e.path);
      } else {
        await this.fetchFile(e, counts);
      }
    }
    // The folders a removed file lay in, up to the mount, that the server does not have either: they
    // were here for it (recorded or not), and go with it if nothing else is left in them.
    const emptied = new Set<string>();
    for (const [path] of this.state.files) {
      if (!inside(path) || spelled.has(foldKey(path))) continue;
      await this.removeLocal(path);
      for (let p = parentPath(path); p !== mountPath && inside(p) && !spelled.has(foldKey(p)); p = parentPath(p)) emptied.add(p);
    }
    // Folders too: one the server no longer has there goes, unless it holds something not sent yet
    // (then the next push sends it); one it has is recorded as synced.
    const gone = [...this.state.folders].filter((f) => inside(f) && !spelled.has(foldKey(f)));
    for (const folder of [...new Set([...gone, ...emptied])].sort().reverse()) await this.removeLocal(folder);
    this.state.setFolders([...this.state.folders, ...[...remote.values()].filter((e) => e.isFolder).map((e) => e.path)]);
    for (const [path, problem] of this.state.problems) {
      if (problem.direction === "download" && inside(path) && !remote.has(path)) this.state.setProblem(path, undefined);
    }
    if (historyLost) for (const [path] of this.state.unapplied) if (inside(path) && !spelled.has(foldKey(path))) this.state.applied(path);
  }

  /** What `satchel status` shows. */
  async status(): Promise<{
    tracked: number; pendingFiles: number; pendingBytes: number; lastSyncAt: number; cursors: Record<string, string>; problems: ProblemFile[];
    skipped: SkippedEntry[];
  }> {
    if (!this.state) await this.open();
    const { files } = await this.scan();
    const pending = [...files].filter(([p, f]) => this.changed(p, f));
    const deleted = this.state.files.filter(([p]) => !files.has(p)).length;
    return {
      tracked: this.state.files.length,
      pendingFiles: pending.length + deleted,
      pendingBytes: pending.reduce((n, [, f]) => n + f.size, 0),
      lastSyncAt: this.state.lastSyncAt,
      cursors: this.state.cursors,
      problems: this.state.problems.sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, p]) => ({ path, ...p })),
      skipped: this.skipped,
    };
  }
}

async function removeEmptyDirs(dir: string): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  let empty = true;
  for (const e of entries) {
    if (e.isDirectory() && (await removeEmptyDirs(join(dir, e.name)))) continue;
    empty = false;
  }
  if (empty) await rmdir(dir).catch(() => undefined);
  return empty;
}

/**
 * A scan's files and folders after the local folder `from` was renamed to `to` (exactly as spelled
 * here: a twin in another case is another folder); gives the mapping of a path under `from`.
 */
function rekeyScan(from: string, to: string, files: Map<string, LocalFile>, folders: Set<string>): (p: string) => string {
  const under = (p: string) => p === from || p.startsWith(`${from}/`);
  const moved = (p: string) => `${to}${p.slice(from.length)}`;
  for (const [p, f] of [...files]) {
    if (!under(p)) continue;
    files.delete(p);
    files.set(moved(p), f);
  }
  for (const f of [...folders]) {
    if (!under(f)) continue;
    folders.delete(f);
    folders.add(moved(f));
  }
  return moved;
}
