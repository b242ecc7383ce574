import type { ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, resourceExhausted, unavailable } from "../errors.js";
import { packBlockList, unpackBlockList, type BlockEntry } from "../tree/block-list.js";
import { ROOT, ancestorsOf, conflictedCopyPath, descendantRange, keyHash, nameOf, parentOf, pathKey } from "../tree/paths.js";
import { planSeenDelete } from "../tree/seen-delete.js";
import type { CursorState, CursorStates } from "./cursor-state.js";
import type { NamespaceStore } from "./namespaces.js";
import type { PoolConnection } from "./shards.js";

export interface FileRecord {
  namespaceId: bigint;
  path: string;
  name: string;
  isFolder: boolean;
  revision: bigint;
  size: bigint;
  blocks: BlockEntry[];
  cursor: bigint;
  modifiedAt: Date;
  deleted: boolean;
}

export interface CommitInput {
  namespaceId: bigint;
  path: string;
  blocks: BlockEntry[];
  size: bigint;
  parentRevision: bigint;
  requestId: string;
  /** Names the conflicted copy when the parent revision is stale. */
  deviceName: string;
}

export type JournalOperation = "put" | "mkdir" | "delete" | "move" | "mount";

export interface JournalRecord {
  cursor: bigint;
  operation: JournalOperation;
  path: string;
  fromPath: string | null;
  mountedNamespaceId: bigint | null;
  /** The version a put made (absent when it was pruned since). */
  file?: FileRecord;
}

export interface RetentionPolicy {
  retentionDays: number;
  versionsKept: number;
  journalDays: number;
}

export interface QuotaPolicy {
  /** Bytes the namespace's owner may still add outside this namespace's current usage; undefined: unlimited. */
  headroom(namespaceId: bigint): Promise<bigint | undefined>;
}

/** The parent key of a row's path key, computed by MySQL (top-level entries have the root "/"). */
export const PARENT_KEY_SQL = "IF(LOCATE('/', path_key, 2) = 0, '/', LEFT(path_key, LENGTH(path_key) - LENGTH(SUBSTRING_INDEX(path_key, '/', -1)) - 1))";

const COLUMNS = "path, is_folder, revision, size, block_list, cursor_position, modified_at, deleted";
/** How long a write waits for a namespace that is switching shards before giving up. */
const MOVE_WAIT_MS = 15_000;

/**
 * Reads a commit needs, sent in the same round trip that opens the transaction and takes the
 * namespace's lock: one query of its own (sql, params) and the rows of some paths.
 */
export interface Prefetch {
  sql: string;
  params: unknown[];
  paths: string[];
}

/** A write that reached a namespace while it switches shards: wait, then go to its new shard. */
class NamespaceRelocating extends Error {}

/**
 * One open transaction on a namespace's shard with the namespace's state row locked: every change
 * takes the next cursor from here, so cursors (which double as revisions) are strictly increasing
 * with no gaps, and the tree, versions, journal and block references change together or not at all.
 */
export class NamespaceTxn {
  readonly startCursor: bigint;
  readonly startUsedBytes: bigint;

  constructor(
    readonly conn: PoolConnection,
    readonly ns: bigint,
    public cursor: bigint,
    public usedBytes: bigint,
    readonly journalFloor: bigint,
  ) {
    this.startCursor = cursor;
    this.startUsedBytes = usedBytes;
  }

  /** Writes whose results nobody reads are sent together with the next read or the COMMIT. */
  private pending: { sql: string; params: unknown[] }[] = [];
  /** Rows read (or prefetched) in this transaction, by path key; null: no row. */
  private readonly rows = new Map<string, RowDataPacket | null>();

  next(): bigint {
    this.cursor += 1n;
    return this.cursor;
  }

  write(sql: string, params: unknown[]): void {
    this.pending.push({ sql, params });
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    await this.conn.query(batch.map((b) => b.sql).join(";\n"), batch.flatMap((b) => b.params));
  }

  /** A read (or a write whose result matters): queued writes go first, in order. */
  async query<T extends RowDataPacket[] | ResultSetHeader>(sql: string, params: unknown[]): Promise<[T, unknown]> {
    await this.flush();
    this.rows.clear();
    return this.conn.query<T>(sql, params);
  }

  /** Remembers rows read ahead (see Prefetch) for the keys asked about; missing keys have no row. */
  absorb(keys: string[], found: RowDataPacket[]): void {
    for (const k of keys) this.rows.set(k, null);
    for (const r of found) this.rows.set(Buffer.from(r.path_key).toString(), r);
  }

  async journal(operation: JournalOperation, path: string, revision: bigint, extra: { fromPath?: string; mounted?: bigint } = {}): Promise<void> {
    this.write(
      "INSERT INTO journal (namespace_id, cursor_position, path, operation, revision, from_path, mounted_namespace_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
      [this.ns, this.cursor, path, operation, revision, extra.fromPath ?? null, extra.mounted ?? null],
    );
  }

  /** The row at a path (the namespace's lock, held by this transaction, keeps it stable). */
  async row(path: string): Promise<RowDataPacket | undefined> {
    const key = pathKey(path);
    const known = this.rows.get(key);
    if (known !== undefined) return known ?? undefined;
    const [rows] = await this.query<RowDataPacket[]>(`SELECT ${COLUMNS}, deleted_cursor FROM files WHERE namespace_id = ? AND path_key = ?`, [this.ns, key]);
    return rows[0];
  }

  /**
   * The path with every folder above it that exists spelled as the tree spells it: a path that
   * differs only in case names the same folders ("/Docs/a.txt" lands in "/docs"), so every path
   * below a folder starts with that folder's own spelling. The last name is the caller's.
   */
  async spelled(path: string): Promise<string> {
    const names = path.split("/").filter(Boolean);
    let out = "";
    for (const [i, name] of names.entries()) {
      const here = `${out}/${name}`;
      const row = i < names.length - 1 ? await this.row(here) : undefined;
      out = row && !row.deleted && row.is_folder ? row.path : here;
    }
    return out || "/";
  }

  /** Creates (or brings back from the trash) every missing ancestor folder of a path, as on Dropbox. */
  async ensureFolders(path: string): Promise<void> {
    for (const folder of ancestorsOf(path)) await this.ensureFolder(folder);
  }

  async ensureFolder(folder: string): Promise<RowDataPacket | undefined> {
    const existing = await this.row(folder);
    if (existing && !existing.deleted) {
      if (!existing.is_folder) throw failedPrecondition(`"${existing.path}" is a file, so nothing can be created inside it`);
      return existing;
    }
    const cursor = this.next();
    this.rows.delete(pathKey(folder));
    if (existing) {
      // A trashed file or folder there: the new folder replaces it (its versions stay restorable).
      this.write(
        "UPDATE files SET path = ?, is_folder = TRUE, deleted = FALSE, deleted_cursor = NULL, revision = ?, size = 0, block_list = '', cursor_position = ? WHERE namespace_id = ? AND path_key = ?",
        [folder, cursor, cursor, this.ns, pathKey(folder)],
      );
    } else {
      this.write(
        `INSERT INTO files (namespace_id, path_key, parent_key_hash, path, is_folder, revision, size, block_list, cursor_position)
         VALUES (?, ?, ?, ?, TRUE, ?, 0, '', ?)`,
        [this.ns, pathKey(folder), keyHash(pathKey(parentOf(folder))), folder, cursor, cursor],
      );
    }
    await this.journal("mkdir", folder, cursor);
    return undefined;
  }

  /** Records block references of a new version; relayed to the blockserver after the commit. */
  async reference(blocks: BlockEntry[], delta: 1 | -1): Promise<void> {
    const distinct = [...new Map(blocks.map((b) => [Buffer.from(b.hash).toString("hex"), Buffer.from(b.hash)])).values()];
    if (distinct.length > 0) this.write("INSERT INTO block_reference_outbox (hash, delta) VALUES ?", [distinct.map((h) => [h, delta])]);
  }
}

/**
 * The file tree of each namespace on its shard: commits with conflict copies, folders, the trash,
 * moves, versions and the journal devices catch up from.
 */
export class FileStore {
  constructor(
    private readonly namespaces: NamespaceStore,
    private readonly cursorStates: CursorStates,
    private readonly quota: QuotaPolicy,
    private readonly onAdvance: (namespaceId: bigint, cursor: bigint) => Promise<void>,
  ) {}

  /**
   * Runs fn in one transaction on the namespace's shard with its state row locked. Writes to a
   * namespace that is switching shards wait (briefly) and then go to the new shard.
   */
  async mutate<T>(ns: bigint, fn: (t: NamespaceTxn, prefetched: RowDataPacket[]) => Promise<T>, prefetch?: Prefetch): Promise<T> {
    const keys = prefetch?.paths.map(pathKey) ?? [];
    const ahead = prefetch ? `;\n${prefetch.sql};\nSELECT ${COLUMNS}, deleted_cursor, path_key FROM files WHERE namespace_id = ? AND path_key IN (?)` : "";
    const aheadParams = prefetch ? [...prefetch.params, ns, keys] : [];
    const deadline = performance.now() + MOVE_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      const pool = await this.namespaces.shardFor(ns);
      const conn = await pool.getConnection();
      let txn: NamespaceTxn | undefined;
      try {
        // One round trip opens the transaction and takes the namespace's lock; READ COMMITTED,
        // because that lock already serialises the namespace's writers and gap locks would only
        // make neighbouring namespaces deadlock each other.
        const [results] = await conn.query<RowDataPacket[][]>(
          `SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION;
           SELECT cursor_position, used_bytes, journal_floor, state FROM namespace_state WHERE namespace_id = ? FOR UPDATE${ahead}`, [ns, ...aheadParams],
        );
        const state = results[2];
        if (state.length === 0) throw notFound(`namespace ${ns} has no state on its shard`);
        if (state[0].state !== "active") throw new NamespaceRelocating(state[0].state);
        txn = new NamespaceTxn(conn, ns, BigInt(state[0].cursor_position), BigInt(state[0].used_bytes), BigInt(state[0].journal_floor));
        if (prefetch) txn.absorb(keys, results[4]);
        const out = await fn(txn, prefetch ? results[3] : []);
        if (txn.cursor !== txn.startCursor || txn.usedBytes !== txn.startUsedBytes) {
          txn.write("UPDATE namespace_state SET cursor_position = ?, used_bytes = ? WHERE namespace_id = ?", [txn.cursor, txn.usedBytes, ns]);
        }
        txn.write("COMMIT", []);
        await txn.flush();
        conn.release();
        if (txn.cursor !== txn.startCursor) await this.onAdvance(ns, txn.cursor);
        return out;
      } catch (err) {
        await conn.query("ROLLBACK").catch(() => undefined);
        conn.release();
        if (!(err instanceof NamespaceRelocating)) throw err;
        if (performance.now() > deadline) throw unavailable(`namespace ${ns} is moving between shards; retry in a few seconds`);
        this.namespaces.forgetPlacement(ns);
        await new Promise((r) => setTimeout(r, Math.min(20 * (attempt + 1), 200)));
      }
    }
  }

  async commit(input: CommitInput): Promise<{ file: FileRecord; conflict: boolean }> {
    const key = pathKey(input.path);
    const ns = input.namespaceId;
    // The request id, the file and its ancestor folders are read with the lock, in one round trip.
    const prefetch: Prefetch = {
      sql: "SELECT path_key, revision FROM commit_requests WHERE namespace_id = ? AND request_id = ?",
      params: [ns, input.requestId],
      paths: [input.path, ...ancestorsOf(input.path)],
    };
    return this.mutate(ns, async (t, done) => {
      if (input.requestId && done.length > 0) {
        const doneKey = Buffer.from(done[0].path_key).toString();
        const file = await this.versionOf(t.conn, ns, BigInt(done[0].revision));
        return { file: file ?? notFoundThrow(input.path), conflict: doneKey !== key };
      }
      const current = await t.row(input.path);
      if (current?.is_folder && !current.deleted) throw failedPrecondition(`"${current.path}" is a folder; a file cannot replace it`);
      const live = current && !current.deleted;
      const currentRevision = current ? BigInt(current.revision) : 0n;
      // A trashed file may be re-created from scratch (parent 0) or from its last version.
      const accepted = live ? currentRevision === input.parentRevision : input.parentRevision === 0n || input.parentRevision === currentRevision;
      let path: string = live ? current.path : await t.spelled(input.path);
      let replaced = accepted ? current : undefined;
      if (!accepted) {
        // The parent is stale: keep this upload beside the winner instead of overwriting it.
        for (let attempt = 1; ; attempt++) {
          path = conflictedCopyPath(current?.path ?? input.path, input.deviceName, new Date(), attempt);
          const taken = await t.row(path);
          if (!taken || taken.deleted) {
            replaced = taken;
            break;
          }
        }
      }
      const replacedLiveSize = replaced && !replaced.deleted && !replaced.is_folder ? BigInt(replaced.size) : 0n;
      await this.checkQuota(t, input.size - replacedLiveSize);
      await t.ensureFolders(path);
      const revision = t.next();
      const pkey = pathKey(path);
      const blockList = packBlockList(input.blocks);
      // One clock for the row, the version and the response: the database's would differ by a tick.
      const now = new Date();
      t.write(
        `INSERT INTO files (namespace_id, path_key, parent_key_hash, path, is_folder, revision, size, block_list, cursor_position, modified_at)
         VALUES (?, ?, ?, ?, FALSE, ?, ?, ?, ?, ?)
         ON DUPLICATE KEY UPDATE path = VALUES(path), is_folder = FALSE, deleted = FALSE, deleted_cursor = NULL, revision = VALUES(revision), size = VALUES(size),
           block_list = VALUES(block_list), cursor_position = VALUES(cursor_position), modified_at = VALUES(modified_at)`,
        [ns, pkey, keyHash(pathKey(parentOf(path))), path, revision, input.size, blockList, revision, now],
      );
      t.write(
        "INSERT INTO file_versions (namespace_id, path_key, revision, size, block_list, cursor_position, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [ns, pkey, revision, input.size, blockList, revision, now],
      );
      await t.journal("put", path, revision);
      await t.reference(input.blocks, 1);
      t.usedBytes += input.size - replacedLiveSize;
      if (input.requestId) {
        t.write("INSERT INTO commit_requests (namespace_id, request_id, path_key, revision) VALUES (?, ?, ?, ?)", [ns, input.requestId, pkey, revision]);
      }
      const file: FileRecord = {
        namespaceId: ns, path, name: nameOf(path), isFolder: false, revision, size: input.size,
        blocks: input.blocks, cursor: revision, modifiedAt: now, deleted: false,
      };
      return { file, conflict: !accepted };
    }, prefetch);
  }

  /** Refuses a change that would take the namespace owner's usage over quota (nothing is written). */
  private async checkQuota(t: NamespaceTxn, added: bigint): Promise<void> {
    if (added <= 0n) return;
    const headroom = await this.quota.headroom(t.ns);
    if (headroom !== undefined && t.usedBytes + added > headroom) {
      throw resourceExhausted(`over quota: this needs ${added} more bytes and only ${headroom > t.usedBytes ? headroom - t.usedBytes : 0n} are left; delete files (and empty the trash) or raise the quota`);
    }
  }

  /** A stored version by its revision (revisions are unique within a namespace). */
  private async versionOf(conn: PoolConnection, ns: bigint, revision: bigint, path?: string): Promise<FileRecord | undefined> {
    const [rows] = await conn.query<RowDataPacket[]>(
      `SELECT v.size, v.block_list, v.cursor_position, v.created_at, f.path FROM file_versions v
         LEFT JOIN files f ON f.namespace_id = v.namespace_id AND f.path_key = v.path_key
       WHERE v.namespace_id = ? AND v.revision = ?`,
      [ns, revision],
    );
    const r = rows[0];
    if (!r) return undefined;
    const p = path ?? r.path ?? "";
    return {
      namespaceId: ns, path: p, name: nameOf(p), isFolder: false, revision, deleted: false,
      size: BigInt(r.size), blocks: unpackBlockList(r.block_list), cursor: BigInt(r.cursor_position), modifiedAt: r.created_at,
    };
  }

  async createFolder(ns: bigint, path: string): Promise<FileRecord> {
    return this.mutate(ns, async (t) => {
      const existing = await t.row(path);
      if (existing && !existing.deleted) throw alreadyExists(`"${existing.path}" already exists as a ${existing.is_folder ? "folder" : "file"}`);
      const spelled = await t.spelled(path);
      await t.ensureFolders(spelled);
      await t.ensureFolder(spelled);
      return toRecord(ns, (await t.row(spelled))!);
    });
  }

  /**
   * Moves a file or a folder with everything in it to the trash, in one transaction. With
   * `seenCursor`, only what the caller saw goes: entries last changed after it survive, with the
   * folders above them (see tree/seen-delete.ts), and a file changed after it is not deleted.
   */
  async delete(ns: bigint, path: string, parentRevision: bigint, seenCursor = 0n): Promise<FileRecord & { kept: number; removed: number }> {
    return this.mutate(ns, async (t) => {
      const row = await t.row(path);
      if (!row || row.deleted) throw notFound(`"${path}" does not exist`);
      if (seenCursor > t.startCursor) {
        throw invalidArgument(`seen_cursor ${seenCursor} is ahead of the namespace (at ${t.startCursor}); send the cursor ListDelta gave you`);
      }
      if (parentRevision !== 0n && BigInt(row.revision) !== parentRevision) {
        throw failedPrecondition(`"${row.path}" changed since revision ${parentRevision} (now ${row.revision}); look at the new version before deleting it`);
      }
      const key = pathKey(path);
      const [lo, hi] = descendantRange(key);
      if (seenCursor > 0n && !row.is_folder && BigInt(row.cursor_position) > seenCursor) {
        throw failedPrecondition(`"${row.path}" changed after cursor ${seenCursor}; look at the new version before deleting it`);
      }
      if (seenCursor > 0n && row.is_folder) return this.deleteSeen(t, row, seenCursor);
      const cursor = t.next();
      const [sum] = await t.query<RowDataPacket[]>(
        "SELECT COALESCE(SUM(size), 0) AS bytes, COUNT(*) AS n FROM files WHERE namespace_id = ? AND deleted = FALSE AND (path_key = ? OR (path_key > ? AND path_key < ?))",
        [ns, key, lo, hi],
      );
      await t.query(
        `UPDATE files SET deleted = TRUE, deleted_cursor = ?, cursor_position = ?, modified_at = CURRENT_TIMESTAMP(3)
         WHERE namespace_id = ? AND deleted = FALSE AND (path_key = ? OR (path_key > ? AND path_key < ?))`,
        [cursor, cursor, ns, key, lo, hi],
      );
      t.usedBytes -= BigInt(sum[0].bytes);
      await t.journal("delete", row.path, BigInt(row.revision));
      return { ...toRecord(ns, row), deleted: true, cursor, kept: 0, removed: Number(sum[0].n) };
    });
  }

  /** A folder delete limited to what the caller saw: each doomed subtree is its own trash group and journal entry. */
  private async deleteSeen(t: NamespaceTxn, row: RowDataPacket, seenCursor: bigint): Promise<FileRecord & { kept: number; removed: number }> {
    const ns = t.ns;
    const [lo, hi] = descendantRange(pathKey(row.path));
    const [inside] = await t.query<RowDataPacket[]>(
      "SELECT path, is_folder, size, revision, cursor_position FROM files WHERE namespace_id = ? AND deleted = FALSE AND path_key > ? AND path_key < ?",
      [ns, lo, hi],
    );
    const plan = planSeenDelete(
      { path: row.path, cursor: BigInt(row.cursor_position) },
      inside.map((r) => ({ path: r.path as string, cursor: BigInt(r.cursor_position) })),
      seenCursor,
    );
    const byKey = new Map<string, RowDataPacket>([[pathKey(row.path), row], ...inside.map((r) => [pathKey(r.path), r] as [string, RowDataPacket])]);
    const doomedKeys = new Set(plan.doomed.map(pathKey));
    let cursor = t.cursor;
    for (const root of plan.roots) {
      cursor = t.next();
      const rootKey = pathKey(root);
      const [rlo, rhi] = descendantRange(rootKey);
      const group = [...doomedKeys].filter((k) => k === rootKey || (k > rlo && k < rhi));
      for (const k of group) {
        const r = byKey.get(k)!;
        if (!r.is_folder) t.usedBytes -= BigInt(r.size);
      }
      await t.query(
        "UPDATE files SET deleted = TRUE, deleted_cursor = ?, cursor_position = ?, modified_at = CURRENT_TIMESTAMP(3) WHERE namespace_id = ? AND deleted = FALSE AND path_key IN (?)",
        [cursor, cursor, ns, group],
      );
      const top = byKey.get(rootKey)!;
      await t.journal("delete", top.path as string, BigInt(top.revision));
    }
    const rootDoomed = doomedKeys.has(pathKey(row.path));
    return { ...toRecord(ns, row), deleted: rootDoomed, cursor: rootDoomed ? cursor : BigInt(row.cursor_position), kept: plan.kept.length, removed: plan.doomed.length };
  }

  /** Brings back a trashed entry and whatever was deleted with it. */
  async undelete(ns: bigint, path: string): Promise<FileRecord> {
    return this.mutate(ns, async (t) => {
      const row = await t.row(path);
      if (!row || !row.deleted) throw notFound(`"${path}" is not in the trash`);
      const key = pathKey(path);
      const [lo, hi] = descendantRange(key);
      const [restored] = await t.query<RowDataPacket[]>(
        `SELECT ${COLUMNS} FROM files WHERE namespace_id = ? AND deleted_cursor = ? AND (path_key = ? OR (path_key > ? AND path_key < ?)) ORDER BY path_key`,
        [ns, row.deleted_cursor, key, lo, hi],
      );
      const bytes = restored.reduce((n, r) => n + (r.is_folder ? 0n : BigInt(r.size)), 0n);
      await this.checkQuota(t, bytes);
      await t.ensureFolders(row.path);
      for (const r of restored) {
        const cursor = t.next();
        await t.query(
          "UPDATE files SET deleted = FALSE, deleted_cursor = NULL, cursor_position = ? WHERE namespace_id = ? AND path_key = ?", [cursor, ns, pathKey(r.path)],
        );
        await t.journal(r.is_folder ? "mkdir" : "put", r.path, BigInt(r.revision));
      }
      t.usedBytes += bytes;
      return toRecord(ns, (await t.row(path))!);
    });
  }

  /** Removes a trashed entry (and what was deleted with it) and all its versions for good. */
  async purge(ns: bigint, path: string): Promise<number> {
    return this.mutate(ns, async (t) => {
      const row = await t.row(path);
      if (!row || !row.deleted) throw failedPrecondition(`"${path}" is not in the trash: delete it first`);
      const key = pathKey(path);
      const [lo, hi] = descendantRange(key);
      const [doomed] = await t.query<RowDataPacket[]>(
        "SELECT path_key FROM files WHERE namespace_id = ? AND deleted_cursor = ? AND (path_key = ? OR (path_key > ? AND path_key < ?))",
        [ns, row.deleted_cursor, key, lo, hi],
      );
      await this.removeEntries(t, doomed.map((d) => d.path_key as Buffer));
      return doomed.length;
    });
  }

  /** Deletes entries and every version of them, releasing the versions' block references. */
  private async removeEntries(t: NamespaceTxn, keys: Buffer[]): Promise<number> {
    let versions = 0;
    for (let i = 0; i < keys.length; i += 500) {
      const batch = keys.slice(i, i + 500);
      const [rows] = await t.query<RowDataPacket[]>("SELECT block_list FROM file_versions WHERE namespace_id = ? AND path_key IN (?)", [t.ns, batch]);
      for (const v of rows) await t.reference(unpackBlockList(v.block_list), -1);
      versions += rows.length;
      await t.query("DELETE FROM file_versions WHERE namespace_id = ? AND path_key IN (?)", [t.ns, batch]);
      await t.query("DELETE FROM files WHERE namespace_id = ? AND path_key IN (?)", [t.ns, batch]);
    }
    return versions;
  }

  /**
   * Moves or renames a file or a folder with everything in it (trash included) in one
   * transaction: one UPDATE rewrites the keys of the whole subtree, and its versions follow it.
   */
  async move(ns: bigint, from: string, to: string): Promise<{ entry: FileRecord; descendants: number }> {
    const fromKey = pathKey(from);
    const toKey = pathKey(to);
    if (toKey.startsWith(`${fromKey}/`)) throw invalidArgument(`cannot move "${from}" into itself ("${to}")`);
    return this.mutate(ns, async (t) => {
      const row = await t.row(from);
      if (!row || row.deleted) throw notFound(`"${from}" does not exist`);
      // Into the target's folders as they are spelled (a case-only rename of the entry itself stays).
      to = await t.spelled(to);
      const [fromLo, fromHi] = descendantRange(fromKey);
      if (fromKey !== toKey) {
        const target = await t.row(to);
        if (target && !target.deleted) throw alreadyExists(`"${target.path}" already exists; move or delete it first`);
        // A trashed entry exactly where a moved entry lands is superseded by it: its row goes, its
        // versions stay as history of that path (listed and restorable with the moved entry's). Other
        // trashed entries there stay in the trash. Nothing's past is erased by a rename.
        const [moving] = await t.query<RowDataPacket[]>(
          "SELECT path_key FROM files WHERE namespace_id = ? AND (path_key = ? OR (path_key > ? AND path_key < ?))", [ns, fromKey, fromLo, fromHi],
        );
        const fromBytes = Buffer.byteLength(fromKey);
        const landing = moving.map((r) => Buffer.concat([Buffer.from(toKey), (r.path_key as Buffer).subarray(fromBytes)]));
        for (let i = 0; i < landing.length; i += 500) {
          await t.query("DELETE FROM files WHERE namespace_id = ? AND deleted = TRUE AND path_key IN (?)", [ns, landing.slice(i, i + 500)]);
        }
        await t.ensureFolders(to);
      }
      // After the folders it lands in (they take cursors of their own).
      const cursor = t.next();
      // Bytes, not characters, for keys (VARBINARY); characters for display paths.
      const fromKeyBytes = Buffer.byteLength(fromKey);
      const storedFrom: string = row.path;
      const [res] = await t.query<ResultSetHeader>(
        `UPDATE files SET
           path_key = CONCAT(?, SUBSTRING(path_key, ?)),
           path = CONCAT(?, SUBSTRING(path, ?)),
           parent_key_hash = UNHEX(LEFT(SHA2(${PARENT_KEY_SQL}, 256), 32)),
           cursor_position = ?
         WHERE namespace_id = ? AND path_key > ? AND path_key < ?`,
        [Buffer.from(toKey), fromKeyBytes + 1, to, [...storedFrom].length + 1, cursor, ns, fromLo, fromHi],
      );
      await t.query(
        "UPDATE files SET path_key = ?, path = ?, parent_key_hash = ?, cursor_position = ?, modified_at = CURRENT_TIMESTAMP(3) WHERE namespace_id = ? AND path_key = ?",
        [Buffer.from(toKey), to, keyHash(pathKey(parentOf(to))), cursor, ns, fromKey],
      );
      if (fromKey !== toKey) {
        await t.query(
          "UPDATE file_versions SET path_key = CONCAT(?, SUBSTRING(path_key, ?)) WHERE namespace_id = ? AND (path_key = ? OR (path_key > ? AND path_key < ?))",
          [Buffer.from(toKey), fromKeyBytes + 1, ns, fromKey, fromLo, fromHi],
        );
      }
      await t.journal("move", to, BigInt(row.revision), { fromPath: storedFrom });
      return { entry: toRecord(ns, (await t.row(to))!), descendants: res.affectedRows };
    });
  }

  async revisions(ns: bigint, path: string, limit: number): Promise<FileRecord[]> {
    const pool = await this.namespaces.shardFor(ns);
    const [rows] = await pool.query<RowDataPacket[]>(
      `SELECT revision, size, block_list, cursor_position, created_at FROM file_versions WHERE namespace_id = ? AND path_key = ?
       ORDER BY revision DESC${limit > 0 ? " LIMIT ?" : ""}`,
      [ns, pathKey(path), ...(limit > 0 ? [limit] : [])],
    );
    return rows.map((r) => ({
      namespaceId: ns, path, name: nameOf(path), isFolder: false, deleted: false, revision: BigInt(r.revision),
      size: BigInt(r.size), blocks: unpackBlockList(r.block_list), cursor: BigInt(r.cursor_position), modifiedAt: r.created_at,
    }));
  }

  async version(ns: bigint, revision: bigint): Promise<FileRecord | undefined> {
    const pool = await this.namespaces.shardFor(ns);
    const conn = await pool.getConnection();
    try {
      return await this.versionOf(conn, ns, revision);
    } finally {
      conn.release();
    }
  }

  async get(namespaceId: bigint, path: string): Promise<FileRecord | undefined> {
    const pool = await this.namespaces.shardFor(namespaceId);
    const [rows] = await pool.query<RowDataPacket[]>(`SELECT ${COLUMNS} FROM files WHERE namespace_id = ? AND path_key = ?`, [namespaceId, pathKey(path)]);
    return rows.length ? toRecord(namespaceId, rows[0]) : undefined;
  }

  /** One page of a folder, in path order; `after` is the last path key of the previous page. */
  async list(namespaceId: bigint, folder: string, opts: { recursive: boolean; includeDeleted: boolean; limit: number; after: string }): Promise<{ entries: FileRecord[]; hasMore: boolean }> {
    const pool = await this.namespaces.shardFor(namespaceId);
    const key = pathKey(folder);
    const live = opts.includeDeleted ? "" : " AND deleted = FALSE";
    let rows: RowDataPacket[];
    if (opts.recursive) {
      const [lo, hi] = descendantRange(key);
      [rows] = await pool.query<RowDataPacket[]>(
        `SELECT ${COLUMNS} FROM files WHERE namespace_id = ? AND path_key > ? AND path_key < ?${live} ORDER BY path_key LIMIT ?`,
        [namespaceId, opts.after && opts.after > lo ? opts.after : lo, hi, opts.limit + 1],
      );
    } else {
      [rows] = await pool.query<RowDataPacket[]>(
        `SELECT ${COLUMNS} FROM files WHERE namespace_id = ? AND parent_key_hash = ? AND path_key > ?${live} ORDER BY path_key LIMIT ?`,
        [namespaceId, keyHash(key), opts.after, opts.limit + 1],
      );
    }
    const hasMore = rows.length > opts.limit;
    return { entries: rows.slice(0, opts.limit).map((r) => toRecord(namespaceId, r)), hasMore };
  }

  /** The namespace's latest cursor and the oldest cursor its journal still answers from. */
  cursorState(ns: bigint): Promise<CursorState> {
    return this.cursorStates.of(ns);
  }

  /** Journal entries after a cursor, in order, with the versions the puts made. */
  async delta(ns: bigint, after: bigint, limit: number): Promise<{ entries: JournalRecord[]; hasMore: boolean }> {
    const pool = await this.namespaces.shardFor(ns);
    const [rows] = await pool.query<RowDataPacket[]>(
      `SELECT j.cursor_position, j.path, j.operation, j.revision, j.from_path, j.mounted_namespace_id,
              v.size, v.block_list, v.created_at
         FROM journal j
         LEFT JOIN file_versions v ON j.operation = 'put' AND v.namespace_id = j.namespace_id AND v.revision = j.revision
        WHERE j.namespace_id = ? AND j.cursor_position > ? ORDER BY j.cursor_position LIMIT ?`,
      [ns, after, limit + 1],
    );
    const entries = rows.slice(0, limit).map((r): JournalRecord => {
      const cursor = BigInt(r.cursor_position);
      const base = { namespaceId: ns, path: r.path, name: nameOf(r.path), revision: BigInt(r.revision), cursor, deleted: false };
      let file: FileRecord | undefined;
      if (r.operation === "put" && r.block_list !== null) {
        file = { ...base, isFolder: false, size: BigInt(r.size), blocks: unpackBlockList(r.block_list), modifiedAt: r.created_at };
      } else if (r.operation === "mkdir" || r.operation === "mount") {
        file = { ...base, isFolder: true, size: 0n, blocks: [], modifiedAt: new Date(0) };
      }
      return {
        cursor, operation: r.operation, path: r.path, fromPath: r.from_path,
        mountedNamespaceId: r.mounted_namespace_id === null ? null : BigInt(r.mounted_namespace_id), file,
      };
    });
    return { entries, hasMore: rows.length > limit };
  }

  /**
   * Applies the retention policy to one namespace: trashed entries older than the retention period
   * are purged; versions that are not current and are older than it, or beyond the newest
   * `versionsKept`, are dropped; journal entries older than `journalDays` are compacted. Dropped
   * versions release their block references (the blockserver's GC takes it from there).
   */
  async prune(ns: bigint, policy: RetentionPolicy): Promise<{ versions: number; purged: number; journal: number }> {
    return this.mutate(ns, async (t) => {
      const [trash] = await t.query<RowDataPacket[]>(
        "SELECT path_key FROM files WHERE namespace_id = ? AND deleted = TRUE AND modified_at < CURRENT_TIMESTAMP(3) - INTERVAL ? DAY",
        [ns, policy.retentionDays],
      );
      const purgedVersions = await this.removeEntries(t, trash.map((r) => r.path_key as Buffer));
      const [old] = await t.query<RowDataPacket[]>(
        `SELECT v.path_key, v.revision, v.block_list FROM (
           SELECT path_key, revision, block_list, created_at, ROW_NUMBER() OVER (PARTITION BY path_key ORDER BY revision DESC) AS newest
             FROM file_versions WHERE namespace_id = ?) v
         LEFT JOIN files f ON f.namespace_id = ? AND f.path_key = v.path_key AND f.revision = v.revision
         WHERE f.path_key IS NULL AND (v.created_at < CURRENT_TIMESTAMP(3) - INTERVAL ? DAY OR (? > 0 AND v.newest > ?))`,
        [ns, ns, policy.retentionDays, policy.versionsKept, policy.versionsKept],
      );
      for (let i = 0; i < old.length; i += 500) {
        const batch = old.slice(i, i + 500);
        for (const v of batch) await t.reference(unpackBlockList(v.block_list), -1);
        await t.query("DELETE FROM file_versions WHERE namespace_id = ? AND (path_key, revision) IN (?)", [ns, batch.map((v) => [v.path_key, v.revision])]);
      }
      const [journal] = await t.query<RowDataPacket[]>(
        "SELECT MAX(cursor_position) AS upto FROM journal WHERE namespace_id = ? AND created_at < CURRENT_TIMESTAMP(3) - INTERVAL ? DAY",
        [ns, policy.journalDays],
      );
      let compacted = 0;
      if (journal[0].upto !== null) compacted = await this.compactIn(t, BigInt(journal[0].upto));
      return { versions: old.length + purgedVersions, purged: trash.length, journal: compacted };
    });
  }

  private async compactIn(t: NamespaceTxn, through: bigint): Promise<number> {
    const floor = through > t.cursor ? t.cursor : through;
    const [res] = await t.query<ResultSetHeader>("DELETE FROM journal WHERE namespace_id = ? AND cursor_position <= ?", [t.ns, floor]);
    if (floor > t.journalFloor) await t.query("UPDATE namespace_state SET journal_floor = ? WHERE namespace_id = ?", [floor, t.ns]);
    return res.affectedRows;
  }

  /** Drops journal entries up to a cursor; devices behind it get a reset. */
  async compactJournal(ns: bigint, through: bigint): Promise<number> {
    return this.mutate(ns, (t) => this.compactIn(t, through));
  }
}

function notFoundThrow(path: string): never {
  throw notFound(`"${path}": the first result of this request id is gone (pruned)`);
}

export function toRecord(namespaceId: bigint, r: RowDataPacket): FileRecord {
  return {
    namespaceId,
    path: r.path,
    name: r.path === ROOT ? "" : nameOf(r.path),
    isFolder: Boolean(r.is_folder),
    revision: BigInt(r.revision),
    size: BigInt(r.size),
    blocks: r.is_folder ? [] : unpackBlockList(r.block_list),
    cursor: BigInt(r.cursor_position),
    modifiedAt: r.modified_at,
    deleted: Boolean(r.deleted),
  };
}
