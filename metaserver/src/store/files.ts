import type { ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { ConnectError, alreadyExists, failedPrecondition, invalidArgument, notFound, resourceExhausted } from "../errors.js";
import { packBlockList, unpackBlockList } from "../tree/block-list.js";
import { ancestorsOf, conflictedCopyPath, descendantRange, keyHash, nameOf, parentOf, pathKey } from "../tree/paths.js";
import { planSeenDelete } from "../tree/seen-delete.js";
import { FILE_COLUMNS, PARENT_KEY_SQL, toRecord, type CommitInput, type FileRecord, type QuotaPolicy } from "./file-records.js";
import type { NamespaceTxn, NamespaceTxns, Prefetch } from "./namespace-txn.js";
import type { NamespacePlacement } from "./placement.js";
import type { PoolConnection } from "./shards.js";

/** One change of a batch, inside its namespace (paths are the namespace's own). */
export type BatchChange =
  | { kind: "commit"; input: CommitInput }
  | { kind: "mkdir"; path: string }
  | { kind: "delete"; path: string; parentRevision: bigint; seenCursor: bigint }
  | { kind: "move"; from: string; to: string };

export type BatchValue =
  | { kind: "commit"; file: FileRecord; conflict: boolean }
  | { kind: "mkdir"; folder: FileRecord }
  | { kind: "delete"; entry: FileRecord & { kept: number; removed: number } }
  | { kind: "move"; entry: FileRecord; descendants: number };

/** A request id's earlier commit, as commit_requests holds it. */
interface DoneRequest {
  path_key: Buffer | string;
  revision: bigint | number | string;
}

export type BatchOutcome = { ok: true; value: BatchValue } | { ok: false; error: ConnectError };

/**
 * The file tree of each namespace on its shard, by the tree's rules: commits with conflicted
 * copies, folders, the trash, moves, and reading versions and folders.
 */
export class FileStore {
  constructor(
    private readonly placement: Pick<NamespacePlacement, "shardFor">,
    private readonly txns: NamespaceTxns,
    private readonly quota: QuotaPolicy,
  ) {}

  async commit(input: CommitInput): Promise<{ file: FileRecord; conflict: boolean }> {
    const ns = input.namespaceId;
    // The request id, the file and its ancestor folders are read with the lock, in one round trip.
    const prefetch: Prefetch = {
      sql: "SELECT path_key, revision FROM commit_requests WHERE namespace_id = ? AND request_id = ?",
      params: [ns, input.requestId],
      paths: [input.path, ...ancestorsOf(input.path)],
    };
    // Commits of other namespaces on the shard may share its transaction (group commit).
    return this.txns.mutate(ns, (t, done) => this.commitIn(t, input, done[0] as DoneRequest | undefined), prefetch, { grouped: true });
  }

  /**
   * A commit inside an open transaction on its namespace. `done`: what commit_requests holds for
   * the request id (its path key and revision), when it was committed before.
   */
  private async commitIn(t: NamespaceTxn, input: CommitInput, done: DoneRequest | undefined): Promise<{ file: FileRecord; conflict: boolean }> {
    const key = pathKey(input.path);
    const ns = t.ns;
    if (input.requestId && done) {
      const doneKey = Buffer.from(done.path_key).toString();
      await t.flush();
      const file = await this.versionOf(t.conn, ns, BigInt(String(done.revision)));
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
    t.wrote(path, { isFolder: false, revision, size: input.size, blockList, modifiedAt: now });
    const file: FileRecord = {
      namespaceId: ns, path, name: nameOf(path), isFolder: false, revision, size: input.size,
      blocks: input.blocks, cursor: revision, modifiedAt: now, deleted: false,
    };
    return { file, conflict: !accepted };
  }

  /**
   * Applies a batch of changes to one namespace in one transaction, in order. A change refused
   * (any ConnectError: a stale parent, a path taken, over quota) is rolled back to where it began
   * and answered with its error; the others go on. Commits are idempotent by request id, also
   * within the batch. Any other failure (the shard) fails the whole batch: nothing is written.
   */
  async batch(ns: bigint, changes: BatchChange[]): Promise<BatchOutcome[]> {
    const ids = [...new Set(changes.flatMap((c) => (c.kind === "commit" && c.input.requestId ? [c.input.requestId] : [])))];
    const paths = new Set(changes.flatMap((c) => (c.kind === "commit" ? [c.input.path, ...ancestorsOf(c.input.path)] : [])));
    // Commits' request ids and paths are read with the lock (a batch without commits reads nothing ahead).
    const prefetch: Prefetch | undefined = paths.size === 0 ? undefined : {
      sql: "SELECT path_key, revision, request_id FROM commit_requests WHERE namespace_id = ? AND request_id IN (?)",
      params: [ns, ids.length > 0 ? ids : [""]],
      paths: [...paths],
    };
    return this.txns.mutate(ns, async (t, done) => {
      const answered = new Map<string, DoneRequest>(done.map((r) => [String(r.request_id), r as DoneRequest]));
      const out: BatchOutcome[] = [];
      for (const change of changes) {
        const mark = t.mark();
        try {
          out.push({ ok: true, value: await this.applyIn(t, change, answered) });
        } catch (err) {
          if (!(err instanceof ConnectError)) throw err;
          await t.rollbackTo(mark);
          out.push({ ok: false, error: err });
        }
      }
      return out;
    }, prefetch);
  }

  private async applyIn(t: NamespaceTxn, change: BatchChange, answered: Map<string, DoneRequest>): Promise<BatchValue> {
    switch (change.kind) {
      case "commit": {
        const id = change.input.requestId;
        const result = await this.commitIn(t, change.input, id ? answered.get(id) : undefined);
        if (id) answered.set(id, { path_key: pathKey(result.conflict ? result.file.path : change.input.path), revision: result.file.revision });
        return { kind: "commit", ...result };
      }
      case "mkdir":
        return { kind: "mkdir", folder: await this.createFolderIn(t, change.path) };
      case "delete":
        return { kind: "delete", entry: await this.deleteIn(t, change.path, change.parentRevision, change.seenCursor) };
      case "move":
        return { kind: "move", ...(await this.moveIn(t, change.from, change.to)) };
    }
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
    return this.txns.mutate(ns, (t) => this.createFolderIn(t, path));
  }

  private async createFolderIn(t: NamespaceTxn, path: string): Promise<FileRecord> {
    const existing = await t.row(path);
    if (existing && !existing.deleted) throw alreadyExists(`"${existing.path}" already exists as a ${existing.is_folder ? "folder" : "file"}`);
    const spelled = await t.spelled(path);
    await t.ensureFolders(spelled);
    await t.ensureFolder(spelled);
    return toRecord(t.ns, (await t.row(spelled))!);
  }

  /**
   * Moves a file or a folder with everything in it to the trash, in one transaction. With
   * `seenCursor`, only what the caller saw goes: entries last changed after it survive, with the
   * folders above them (see tree/seen-delete.ts), and a file changed after it is not deleted.
   */
  async delete(ns: bigint, path: string, parentRevision: bigint, seenCursor = 0n): Promise<FileRecord & { kept: number; removed: number }> {
    return this.txns.mutate(ns, (t) => this.deleteIn(t, path, parentRevision, seenCursor));
  }

  private async deleteIn(t: NamespaceTxn, path: string, parentRevision: bigint, seenCursor: bigint): Promise<FileRecord & { kept: number; removed: number }> {
    const ns = t.ns;
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
    return this.txns.mutate(ns, async (t) => {
      const row = await t.row(path);
      if (!row || !row.deleted) throw notFound(`"${path}" is not in the trash`);
      const key = pathKey(path);
      const [lo, hi] = descendantRange(key);
      const [restored] = await t.query<RowDataPacket[]>(
        `SELECT ${FILE_COLUMNS} FROM files WHERE namespace_id = ? AND deleted_cursor = ? AND (path_key = ? OR (path_key > ? AND path_key < ?)) ORDER BY path_key`,
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
    return this.txns.mutate(ns, async (t) => {
      const row = await t.row(path);
      if (!row) throw notFound(`"${path}" does not exist`);
      if (!row.deleted) throw failedPrecondition(`"${path}" is not in the trash: delete it first`);
      const key = pathKey(path);
      const [lo, hi] = descendantRange(key);
      const [doomed] = await t.query<RowDataPacket[]>(
        "SELECT path_key FROM files WHERE namespace_id = ? AND deleted_cursor = ? AND (path_key = ? OR (path_key > ? AND path_key < ?))",
        [ns, row.deleted_cursor, key, lo, hi],
      );
      await t.removeEntries(doomed.map((d) => d.path_key as Buffer));
      return doomed.length;
    });
  }

  /**
   * Moves or renames a file or a folder with everything in it (trash included) in one
   * transaction: one UPDATE rewrites the keys of the whole subtree, and its versions follow it.
   */
  async move(ns: bigint, from: string, to: string): Promise<{ entry: FileRecord; descendants: number }> {
    return this.txns.mutate(ns, (t) => this.moveIn(t, from, to));
  }

  private async moveIn(t: NamespaceTxn, from: string, to: string): Promise<{ entry: FileRecord; descendants: number }> {
    const ns = t.ns;
    const fromKey = pathKey(from);
    const toKey = pathKey(to);
    if (toKey.startsWith(`${fromKey}/`)) throw invalidArgument(`cannot move "${from}" into itself ("${to}")`);
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
  }

  async revisions(ns: bigint, path: string, limit: number): Promise<FileRecord[]> {
    const pool = await this.placement.shardFor(ns);
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
    const pool = await this.placement.shardFor(ns);
    const conn = await pool.getConnection();
    try {
      return await this.versionOf(conn, ns, revision);
    } finally {
      conn.release();
    }
  }

  async get(namespaceId: bigint, path: string): Promise<FileRecord | undefined> {
    const pool = await this.placement.shardFor(namespaceId);
    const [rows] = await pool.query<RowDataPacket[]>(`SELECT ${FILE_COLUMNS} FROM files WHERE namespace_id = ? AND path_key = ?`, [namespaceId, pathKey(path)]);
    return rows.length ? toRecord(namespaceId, rows[0]) : undefined;
  }

  /** One page of a folder, in path order; `after` is the last path key of the previous page. */
  async list(namespaceId: bigint, folder: string, opts: { recursive: boolean; includeDeleted: boolean; limit: number; after: string }): Promise<{ entries: FileRecord[]; hasMore: boolean }> {
    const pool = await this.placement.shardFor(namespaceId);
    const key = pathKey(folder);
    const live = opts.includeDeleted ? "" : " AND deleted = FALSE";
    let rows: RowDataPacket[];
    if (opts.recursive) {
      const [lo, hi] = descendantRange(key);
      [rows] = await pool.query<RowDataPacket[]>(
        `SELECT ${FILE_COLUMNS} FROM files WHERE namespace_id = ? AND path_key > ? AND path_key < ?${live} ORDER BY path_key LIMIT ?`,
        [namespaceId, opts.after && opts.after > lo ? opts.after : lo, hi, opts.limit + 1],
      );
    } else {
      [rows] = await pool.query<RowDataPacket[]>(
        `SELECT ${FILE_COLUMNS} FROM files WHERE namespace_id = ? AND parent_key_hash = ? AND path_key > ?${live} ORDER BY path_key LIMIT ?`,
        [namespaceId, keyHash(key), opts.after, opts.limit + 1],
      );
    }
    const hasMore = rows.length > opts.limit;
    return { entries: rows.slice(0, opts.limit).map((r) => toRecord(namespaceId, r)), hasMore };
  }
}

function notFoundThrow(path: string): never {
  throw notFound(`"${path}": the first result of this request id is gone (pruned)`);
}
