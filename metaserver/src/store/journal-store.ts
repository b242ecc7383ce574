import type { ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { unpackBlockList } from "../tree/block-list.js";
import { nameOf } from "../tree/paths.js";
import type { CursorState, CursorStates } from "./cursor-state.js";
import type { FileRecord, JournalRecord, RetentionPolicy } from "./file-records.js";
import type { NamespaceTxn, NamespaceTxns } from "./namespace-txn.js";
import type { NamespacePlacement } from "./placement.js";

/**
 * Each namespace's journal: where it stands (cursor state), what changed after a cursor (the delta
 * devices catch up from), and how long history is kept (retention and compaction).
 */
export class JournalStore {
  constructor(
    private readonly placement: Pick<NamespacePlacement, "shardFor">,
    private readonly txns: NamespaceTxns,
    private readonly cursorStates: CursorStates,
  ) {}

  /** The namespace's latest cursor and the oldest cursor its journal still answers from. */
  cursorState(ns: bigint): Promise<CursorState> {
    return this.cursorStates.of(ns);
  }

  /** Journal entries after a cursor, in order, with the versions the puts made. */
  async delta(ns: bigint, after: bigint, limit: number): Promise<{ entries: JournalRecord[]; hasMore: boolean }> {
    const pool = await this.placement.shardFor(ns);
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
    return this.txns.mutate(ns, async (t) => {
      const [trash] = await t.query<RowDataPacket[]>(
        "SELECT path_key FROM files WHERE namespace_id = ? AND deleted = TRUE AND modified_at < CURRENT_TIMESTAMP(3) - INTERVAL ? DAY",
        [ns, policy.retentionDays],
      );
      const purgedVersions = await t.removeEntries(trash.map((r) => r.path_key as Buffer));
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
    return this.txns.mutate(ns, (t) => this.compactIn(t, through));
  }
}
