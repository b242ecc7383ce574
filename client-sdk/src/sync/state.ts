import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { within } from "./paths.js";
import type { SyncProblem } from "./problems.js";

/** What the device last synced for one file: enough to tell a local edit from a remote one. */
export interface SyncedFile {
  revision: string;
  size: number;
  mtimeMs: number;
  /** The local file's inode when it was synced: a file that vanished and one that appeared with its inode, size, mtime and blocks were renamed. */
  ino?: number;
  /** The namespace cursor of the change that made this version: orders it against journal entries. */
  cursor?: string;
  /** Block hashes (hex) and sizes, in order: local chunks reusable for downloads. */
  blocks: [string, number][];
}

/**
 * The format written now. Version 2 added problems: its cursors may have moved past downloads that
 * failed and are remembered only as problems, which an agent that ignored them would never fetch,
 * hence the new version rather than an optional field. Version 3 added follow-ups, for the same
 * reason: the cursors may have moved past moves whose ends are still to be compared with the
 * server. Versions 1 and 2 still load (they had none).
 */
export const STATE_VERSION = 3;

/**
 * Paths the end of the next pull compares with the server: both ends of the moves a pull applied,
 * and paths whose server version this device did not take (an unsent local edit was there, or its
 * upload became a conflicted copy): the current version comes down once nothing unsent is in the
 * way. Kept with the cursors, so an agent killed before the comparison still makes it.
 */
export interface FollowUps {
  movedFrom: string[];
  movedTo: string[];
  refetch: string[];
  /**
   * Folders this device deleted that the server kept (they held what the device never saw: a name
   * it ignores, a change after its cursor): made again here, with what the server has in them.
   * Absent in states written before it (read as none).
   */
  relist: string[];
}

const FOLLOW_UP_KINDS = ["movedFrom", "movedTo", "refetch", "relist"] as const;

interface StateData {
  version: typeof STATE_VERSION;
  /** Namespace id -> last applied journal cursor. */
  cursors: Record<string, string>;
  /** Remote path -> what was synced. */
  files: Record<string, SyncedFile>;
  folders: string[];
  lastSyncAt: number;
  /** Remote path -> why it could not be synced, and when it is tried again. */
  problems: Record<string, SyncProblem>;
  followUps: FollowUps;
  /**
   * Remote path -> the cursor of a change there this device did not apply (a name it ignores, a
   * download that failed). A folder delete names a seen cursor below it, so the server never trashes
   * what this device never had. Absent in states written before it (read as none).
   */
  unapplied?: Record<string, string>;
  /**
   * Namespace id -> where that shared folder is mounted in the account's tree, as last listed: a
   * mount that is no longer listed has left the tree (the member left or was removed), whether or
   * not the root's journal says so. Absent in states written before it (read as none).
   */
  mounts?: Record<string, string>;
  /**
   * A random secret of this device's, made once: upload request ids are derived from it and from
   * what is sent (see SyncState.uploadRequestId). Absent in states written before it.
   */
  deviceKey?: string;
}

/** Version 2: the same without follow-ups. */
type StateDataV2 = Omit<StateData, "version" | "followUps"> & { version: 2 };
/** Version 1: the same without problems. */
type StateDataV1 = Omit<StateDataV2, "version" | "problems"> & { version: 1 };

const noFollowUps = (): FollowUps => ({ movedFrom: [], movedTo: [], refetch: [], relist: [] });

/** Reads any known version into the current shape. */
function upgrade(data: StateData | StateDataV2 | StateDataV1 | { version: unknown }): StateData {
  if (data.version === STATE_VERSION) {
    const current = data as StateData;
    return { ...current, followUps: { ...noFollowUps(), ...current.followUps } };
  }
  if (data.version === 2) return { ...(data as StateDataV2), version: STATE_VERSION, followUps: noFollowUps() };
  if (data.version === 1) return { ...(data as StateDataV1), version: STATE_VERSION, problems: {}, followUps: noFollowUps() };
  throw new Error(`unknown sync state version ${String(data.version)}`);
}

/**
 * The sync agent's local state, one JSON document written atomically (temporary file, fsync,
 * rename), so a crash leaves the previous state or the new one, never half of one.
 */
export class SyncState {
  private constructor(private readonly path: string, private data: StateData) {}

  static async open(path: string): Promise<SyncState> {
    try {
      return new SyncState(path, upgrade(JSON.parse(await readFile(path, "utf8")) as { version: unknown }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      return new SyncState(path, { version: STATE_VERSION, cursors: {}, files: {}, folders: [], lastSyncAt: 0, problems: {}, followUps: noFollowUps() });
    }
  }

  cursor(namespaceId: bigint): bigint {
    return BigInt(this.data.cursors[namespaceId.toString()] ?? "0");
  }

  setCursor(namespaceId: bigint, cursor: bigint): void {
    this.data.cursors[namespaceId.toString()] = cursor.toString();
  }

  /** Forgets a namespace this device no longer sees (it left it): mounted again, it is read from the start. */
  forgetCursor(namespaceId: bigint): void {
    delete this.data.cursors[namespaceId.toString()];
    delete this.data.mounts?.[namespaceId.toString()];
  }

  /** Records where a shared folder is mounted now. */
  setMount(namespaceId: bigint, path: string): void {
    (this.data.mounts ??= {})[namespaceId.toString()] = path;
  }

  /** The shared folders this device syncs, by namespace id, where last listed. */
  get mounts(): [bigint, string][] {
    return Object.entries(this.data.mounts ?? {}).map(([id, path]) => [BigInt(id), path]);
  }

  file(path: string): SyncedFile | undefined {
    return this.data.files[path];
  }

  setFile(path: string, file: SyncedFile | undefined): void {
    if (file) this.data.files[path] = file;
    else delete this.data.files[path];
  }

  get files(): [string, SyncedFile][] {
    return Object.entries(this.data.files);
  }

  get folders(): Set<string> {
    return new Set(this.data.folders);
  }

  setFolders(folders: Iterable<string>): void {
    this.data.folders = [...new Set(folders)].sort();
  }

  problem(path: string): SyncProblem | undefined {
    return this.data.problems[path];
  }

  setProblem(path: string, problem: SyncProblem | undefined): void {
    if (problem) this.data.problems[path] = problem;
    else delete this.data.problems[path];
  }

  /** Files that could not be synced, by remote path. */
  get problems(): [string, SyncProblem][] {
    return Object.entries(this.data.problems);
  }

  /** Adds a path to compare with the server when the next pull ends (see FollowUps). */
  followUp(kind: keyof FollowUps, path: string): void {
    if (!this.data.followUps[kind].includes(path)) this.data.followUps[kind].push(path);
  }

  get followUps(): FollowUps {
    const f = this.data.followUps;
    return { movedFrom: [...f.movedFrom], movedTo: [...f.movedTo], refetch: [...f.refetch], relist: [...f.relist] };
  }

  /** Adds back follow-ups taken but not done. */
  keepFollowUps(kept: FollowUps): void {
    for (const kind of FOLLOW_UP_KINDS) for (const path of kept[kind]) this.followUp(kind, path);
  }

  /** Forgets the follow-ups that were done (any added meanwhile stay). */
  doneFollowUps(done: FollowUps): void {
    for (const kind of FOLLOW_UP_KINDS) {
      this.data.followUps[kind] = this.data.followUps[kind].filter((p) => !done[kind].includes(p));
    }
  }

  /** Remembers that the change at `cursor` to `path` was not applied here (the earliest one counts). */
  notApplied(path: string, cursor: bigint): void {
    const unapplied = (this.data.unapplied ??= {});
    const known = unapplied[path];
    if (known === undefined || BigInt(known) > cursor) unapplied[path] = cursor.toString();
  }

  /** Forgets the unapplied changes at `path` and under it (applied now, or gone from the server). */
  applied(path: string): void {
    for (const p of Object.keys(this.data.unapplied ?? {})) {
      if (within(p, path)) delete this.data.unapplied![p];
    }
  }

  /** What was unapplied under `from` is unapplied under `to` now (the journal moved it there). */
  moveUnapplied(from: string, to: string): void {
    for (const [p, c] of Object.entries(this.data.unapplied ?? {})) {
      if (!within(p, from)) continue;
      delete this.data.unapplied![p];
      this.notApplied(`${to}${p.slice(from.length)}`, BigInt(c));
    }
  }

  /** Unapplied changes, by remote path, with their cursors. */
  get unapplied(): [string, bigint][] {
    return Object.entries(this.data.unapplied ?? {}).map(([p, c]) => [p, BigInt(c)]);
  }

  /**
   * Makes this device's key if it has none yet; true when it did (the caller saves the state before
   * any upload uses the key, so that a request id made from it is the same after a crash).
   */
  ensureDeviceKey(): boolean {
    if (this.data.deviceKey !== undefined) return false;
    this.data.deviceKey = randomBytes(16).toString("hex");
    return true;
  }

  /**
   * The request id of an upload: the same for the same version of the same local file sent again
   * (path, parent revision, the file's size, mtime and inode, and its block hashes), whatever
   * happened in between — a commit that landed but whose answer was lost, or whose state was never
   * saved before a crash, is answered with its first result instead of becoming a conflicted copy of
   * itself. The local file's identity keeps a file made again with the same bytes (after a delete)
   * a new request; the device's key keeps two devices' ids apart.
   */
  uploadRequestId(path: string, parentRevision: bigint, local: { size: number; mtimeMs: number; ino?: number }, blockHashes: Uint8Array[]): string {
    this.ensureDeviceKey();
    const h = createHash("sha256").update(`${this.data.deviceKey}\0${path}\0${parentRevision}\0${local.size}\0${local.mtimeMs}\0${local.ino ?? ""}\0`);
    for (const hash of blockHashes) h.update(hash);
    return `sync-${h.digest("base64url")}`;
  }

  get lastSyncAt(): number {
    return this.data.lastSyncAt;
  }

  get cursors(): Record<string, string> {
    return { ...this.data.cursors };
  }

  async save(): Promise<void> {
    this.data.lastSyncAt = Date.now();
    await mkdir(dirname(this.path), { recursive: true });
    const temp = `${this.path}.next`;
    await writeFile(temp, JSON.stringify(this.data), { flush: true });
    await rename(temp, this.path);
  }
}
