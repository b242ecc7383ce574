import type { ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { failedPrecondition, notFound, unavailable } from "../errors.js";
import { unpackBlockList, type BlockEntry } from "../tree/block-list.js";
import { ancestorsOf, keyHash, parentOf, pathKey } from "../tree/paths.js";
import { FILE_COLUMNS, type JournalOperation } from "./file-records.js";
import type { NamespacePlacement } from "./placement.js";
import type { PoolConnection } from "./shards.js";

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

/** See NamespaceTxn.mark. */
export interface TxnMark {
  name: string;
  queuedAt: number;
  flushes: number;
  cursor: bigint;
  usedBytes: bigint;
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
  /** Batches of writes sent so far (a mark knows whether its savepoint reached the server). */
  private flushes = 0;
  private savepoints = 0;

  /**
   * A point this transaction can return to (a change of a batch that is refused after it began
   * writing): a savepoint, queued like any write, and the cursor and usage as they are now.
   */
  mark(): TxnMark {
    const name = `change_${++this.savepoints}`;
    this.write(`SAVEPOINT ${name}`, []);
    return { name, queuedAt: this.pending.length - 1, flushes: this.flushes, cursor: this.cursor, usedBytes: this.usedBytes };
  }

  /** Undoes everything since the mark: writes still queued are dropped, sent ones rolled back. */
  async rollbackTo(mark: TxnMark): Promise<void> {
    this.cursor = mark.cursor;
    this.usedBytes = mark.usedBytes;
    this.rows.clear();
    if (this.flushes === mark.flushes) {
      this.pending.length = mark.queuedAt;
      return;
    }
    this.pending = [];
    await this.conn.query(`ROLLBACK TO SAVEPOINT ${mark.name}`);
  }

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
    this.flushes++;
    await this.conn.query(batch.map((b) => b.sql).join(";\n"), batch.flatMap((b) => b.params));
  }

  /**
   * A statement whose result matters (a write that may change any row, or a read of many):
   * queued writes go first, in order, and the rows remembered are forgotten.
   */
  async query<T extends RowDataPacket[] | ResultSetHeader>(sql: string, params: unknown[]): Promise<[T, unknown]> {
    await this.flush();
    this.rows.clear();
    return this.conn.query<T>(sql, params);
  }

  /** A read that changes nothing: queued writes go first; the rows remembered stay. */
  private async read(sql: string, params: unknown[]): Promise<RowDataPacket[]> {
    await this.flush();
    const [rows] = await this.conn.query<RowDataPacket[]>(sql, params);
    return rows;
  }

  /**
   * Remembers the row a write queued in this transaction leaves at a path (so the changes after
   * it in a batch need not read it back). Only the columns the tree's rules read are kept.
   */
  wrote(path: string, row: { isFolder: boolean; revision: bigint; size: bigint; blockList: Buffer | string; modifiedAt: Date }): void {
    this.rows.set(pathKey(path), {
      path, is_folder: row.isFolder ? 1 : 0, deleted: 0, deleted_cursor: null, revision: row.revision, size: row.size,
      block_list: row.blockList, cursor_position: row.revision, modified_at: row.modifiedAt,
    } as unknown as RowDataPacket);
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
    const rows = await this.read(`SELECT ${FILE_COLUMNS}, deleted_cursor FROM files WHERE namespace_id = ? AND path_key = ?`, [this.ns, key]);
    this.rows.set(key, rows[0] ?? null);
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
    if (existing) {
      this.rows.delete(pathKey(folder));
      // A trashed file or folder there: the new folder replaces it (its versions stay restorable).
      this.write(
        "UPDATE files SET path = ?, is_folder = TRUE, deleted = FALSE, deleted_cursor = NULL, revision = ?, size = 0, block_list = '', cursor_position = ? WHERE namespace_id = ? AND path_key = ?",
        [folder, cursor, cursor, this.ns, pathKey(folder)],
      );
    } else {
      const now = new Date();
      this.write(
        `INSERT INTO files (namespace_id, path_key, parent_key_hash, path, is_folder, revision, size, block_list, cursor_position, modified_at)
         VALUES (?, ?, ?, ?, TRUE, ?, 0, '', ?, ?)`,
        [this.ns, pathKey(folder), keyHash(pathKey(parentOf(folder))), folder, cursor, cursor, now],
      );
      this.wrote(folder, { isFolder: true, revision: cursor, size: 0n, blockList: "", modifiedAt: now });
    }
    await this.journal("mkdir", folder, cursor);
    return undefined;
  }

  /** Records block references of a new version; relayed to the blockserver after the commit. */
  async reference(blocks: BlockEntry[], delta: 1 | -1): Promise<void> {
    const distinct = [...new Map(blocks.map((b) => [Buffer.from(b.hash).toString("hex"), Buffer.from(b.hash)])).values()];
    if (distinct.length > 0) this.write("INSERT INTO block_reference_outbox (hash, delta) VALUES ?", [distinct.map((h) => [h, delta])]);
  }

  /** Deletes entries and every version of them, releasing the versions' block references. */
  async removeEntries(keys: Buffer[]): Promise<number> {
    let versions = 0;
    for (let i = 0; i < keys.length; i += 500) {
      const batch = keys.slice(i, i + 500);
      const [rows] = await this.query<RowDataPacket[]>("SELECT block_list FROM file_versions WHERE namespace_id = ? AND path_key IN (?)", [this.ns, batch]);
      for (const v of rows) await this.reference(unpackBlockList(v.block_list), -1);
      versions += rows.length;
      await this.query("DELETE FROM file_versions WHERE namespace_id = ? AND path_key IN (?)", [this.ns, batch]);
      await this.query("DELETE FROM files WHERE namespace_id = ? AND path_key IN (?)", [this.ns, batch]);
    }
    return versions;
  }
}

/**
 * Opens namespace transactions: each on the namespace's current shard, with its state row locked,
 * and tells `onAdvance` of every cursor a committed transaction moved the namespace to.
 */
export class NamespaceTxns {
  constructor(
    private readonly placement: Pick<NamespacePlacement, "shardFor" | "forgetPlacement">,
    private readonly onAdvance: (namespaceId: bigint, cursor: bigint) => Promise<void>,
  ) {}

  /**
   * Runs fn in one transaction on the namespace's shard with its state row locked. Writes to a
   * namespace that is switching shards wait (briefly) and then go to the new shard.
   */
  async mutate<T>(ns: bigint, fn: (t: NamespaceTxn, prefetched: RowDataPacket[]) => Promise<T>, prefetch?: Prefetch): Promise<T> {
    const keys = prefetch?.paths.map(pathKey) ?? [];
    const ahead = prefetch ? `;\n${prefetch.sql};\nSELECT ${FILE_COLUMNS}, deleted_cursor, path_key FROM files WHERE namespace_id = ? AND path_key IN (?)` : "";
    const aheadParams = prefetch ? [...prefetch.params, ns, keys] : [];
    const deadline = performance.now() + MOVE_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      const pool = await this.placement.shardFor(ns);
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
        this.placement.forgetPlacement(ns);
        await new Promise((r) => setTimeout(r, Math.min(20 * (attempt + 1), 200)));
      }
    }
  }
}
