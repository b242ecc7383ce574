import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

/** What the device last synced for one file: enough to tell a local edit from a remote one. */
export interface SyncedFile {
  revision: string;
  size: number;
  mtimeMs: number;
  /** Block hashes (hex) and sizes, in order: local chunks reusable for downloads. */
  blocks: [string, number][];
}

interface StateData {
  version: 1;
  /** Namespace id -> last applied journal cursor. */
  cursors: Record<string, string>;
  /** Remote path -> what was synced. */
  files: Record<string, SyncedFile>;
  folders: string[];
  lastSyncAt: number;
}

/**
 * The sync agent's local state, one JSON document written atomically (temporary file, fsync,
 * rename), so a crash leaves the previous state or the new one, never half of one.
 */
export class SyncState {
  private constructor(private readonly path: string, private data: StateData) {}

  static async open(path: string): Promise<SyncState> {
    try {
      const data = JSON.parse(await readFile(path, "utf8")) as StateData;
      if (data.version !== 1) throw new Error(`unknown sync state version ${data.version}`);
      return new SyncState(path, data);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      return new SyncState(path, { version: 1, cursors: {}, files: {}, folders: [], lastSyncAt: 0 });
    }
  }

  cursor(namespaceId: bigint): bigint {
    return BigInt(this.data.cursors[namespaceId.toString()] ?? "0");
  }

  setCursor(namespaceId: bigint, cursor: bigint): void {
    this.data.cursors[namespaceId.toString()] = cursor.toString();
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
    this.data.folders = [...folders].sort();
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
