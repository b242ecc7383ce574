import type { ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { ConnectError, failedPrecondition, notFound, unavailable } from "../errors.js";
import { unpackBlockList, type BlockEntry } from "../tree/block-list.js";
import { ancestorsOf, keyHash, parentOf, pathKey } from "../tree/paths.js";
import { FILE_COLUMNS, type JournalOperation } from "./file-records.js";
import type { NamespacePlacement } from "./placement.js";
import { takeGroup } from "./group-plan.js";
import type { Pool, PoolConnection } from "./shards.js";

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
 * One open transaction on a shard connection and the writes queued for it: writes whose results
 * nobody reads are sent together with the next read or the COMMIT. A group commit's namespaces
 * share one (see NamespaceTxns).
 */
export class TxnSession {
  private pending: { sql: string; params: unknown[] }[] = [];
  /** Batches of writes sent so far (a mark knows whether its savepoint reached the server). */
  private flushes = 0;
  private savepoints = 0;

  constructor(readonly conn: PoolConnection) {}

  write(sql: string, params: unknown[]): void {
    this.pending.push({ sql, params });
  }

  /** A savepoint, queued like any write; where it stands in the queue and how many batches went before it. */
  savepoint(): { name: string; queuedAt: number; flushes: number } {
    const name = `change_${++this.savepoints}`;
    this.write(`SAVEPOINT ${name}`, []);
    return { name, queuedAt: this.pending.length - 1, flushes: this.flushes };
  }

  /** Undoes everything since a savepoint: writes still queued are dropped, sent ones rolled back. */
  async rollbackTo(mark: { name: string; queuedAt: number; flushes: number }): Promise<void> {
    if (this.flushes === mark.flushes) {
      this.pending.length = mark.queuedAt;
      return;
    }
    this.pending = [];
    await this.conn.query(`ROLLBACK TO SAVEPOINT ${mark.name}`);
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.flushes++;
    await this.conn.query(batch.map((b) => b.sql).join(";\n"), batch.flatMap((b) => b.params));
  }
}

/**
 * One open transaction on a namespace's shard with the namespace's state row locked: every change
 * takes the next cursor from here, so cursors (which double as revisions) are strictly increasing
 * with no gaps, and the tree, versions, journal and block references change together or not at all.
 */
export class NamespaceTxn {
  readonly startCursor: bigint;
  readonly startUsedBytes: bigint;

  constructor(
    readonly session: TxnSession,
    readonly ns: bigint,
    public cursor: bigint,
    public usedBytes: bigint,
    readonly journalFloor: bigint,
  ) {
    this.startCursor = cursor;
    this.startUsedBytes = usedBytes;
  }

  /** Rows read (or prefetched) in this transaction, by path key; null: no row. */
  private readonly rows = new Map<string, RowDataPacket | null>();

  get conn(): PoolConnection {
    return this.session.conn;
  }

  /**
   * A point this transaction can return to (a change of a batch that is refused after it began
   * writing): a savepoint, queued like any write, and the cursor and usage as they are now.
   */
  mark(): TxnMark {
    return { ...this.session.savepoint(), cursor: this.cursor, usedBytes: this.usedBytes };
  }

  /** Undoes everything since the mark: writes still queued are dropped, sent ones rolled back. */
  async rollbackTo(mark: TxnMark): Promise<void> {
    this.cursor = mark.cursor;
    this.usedBytes = mark.usedBytes;
    this.rows.clear();
    await this.session.rollbackTo(mark);
  }

  next(): bigint {
    this.cursor += 1n;
    return this.cursor;
  }

  write(sql: string, params: unknown[]): void {
    this.session.write(sql, params);
  }

  flush(): Promise<void> {
    return this.session.flush();
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

/** Group commit per shard: how many changes one shard transaction may hold, and how many such transactions run at once. */
export interface GroupCommitSettings {
  /** Changes (of different namespaces) sharing one transaction and one COMMIT; 1 turns grouping off. */
  members: number;
  /** Group transactions in flight per shard; changes that arrive meanwhile wait for the next one. */
  slots: number;
  /** Told the size of every group committed (for the metrics). */
  observe?: (members: number) => void;
  /** Told of every grouped change sent on alone (its namespace was moving, or its group failed before COMMIT). */
  alone?: (reason: "relocating" | "group_failed") => void;
}

type TxnBody<T> = (t: NamespaceTxn, prefetched: RowDataPacket[]) => Promise<T>;

/** A change waiting on its shard for a group, and where its answer goes. */
interface Member {
  ns: bigint;
  fn: TxnBody<unknown>;
  prefetch?: Prefetch;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** One shard's waiting changes and how many of its groups are in flight. */
interface ShardQueue {
  waiting: Member[];
  inFlight: number;
}

/**
 * The statement that opens a transaction and locks namespaces' state rows (in key order, so two
 * of them never deadlock), with each one's reads ahead; READ COMMITTED, because those locks already
 * serialise each namespace's writers and gap locks would only make neighbours deadlock each other.
 * Result sets: 2 the state rows, then per prefetch its own query and the rows of its paths.
 */
function opening(members: { ns: bigint; prefetch?: Prefetch }[]): { sql: string; params: unknown[] } {
  const ahead = members.flatMap((m) =>
    m.prefetch ? [{ sql: `${m.prefetch.sql};\nSELECT ${FILE_COLUMNS}, deleted_cursor, path_key FROM files WHERE namespace_id = ? AND path_key IN (?)`, params: [...m.prefetch.params, m.ns, m.prefetch.paths.map(pathKey)] }] : [],
  );
  const ids = [...new Set(members.map((m) => m.ns))];
  return {
    sql: [
      "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION",
      "SELECT namespace_id, cursor_position, used_bytes, journal_floor, state FROM namespace_state WHERE namespace_id IN (?) ORDER BY namespace_id FOR UPDATE",
      ...ahead.map((a) => a.sql),
    ].join(";\n"),
    params: [ids, ...ahead.flatMap((a) => a.params)],
  };
}

/** A namespace's transaction from its locked state row (and the rows read ahead for it). */
function begin(session: TxnSession, ns: bigint, state: RowDataPacket, prefetch: Prefetch | undefined, found: RowDataPacket[] | undefined): NamespaceTxn {
  const txn = new NamespaceTxn(session, ns, BigInt(state.cursor_position), BigInt(state.used_bytes), BigInt(state.journal_floor));
  if (prefetch) txn.absorb(prefetch.paths.map(pathKey), found ?? []);
  return txn;
}

/** Queues the namespace's new cursor and usage, when its changes moved them. */
function settle(txn: NamespaceTxn): void {
  if (txn.cursor !== txn.startCursor || txn.usedBytes !== txn.startUsedBytes) {
    txn.write("UPDATE namespace_state SET cursor_position = ?, used_bytes = ? WHERE namespace_id = ?", [txn.cursor, txn.usedBytes, txn.ns]);
  }
}

/**
 * Opens namespace transactions: each on the namespace's current shard, with its state row locked,
 * and tells `onAdvance` of every cursor a committed transaction moved the namespace to.
 *
 * Group commit: changes asked for with `grouped` wait on their shard while its group transactions
 * (`slots` of them) are in flight, and the next group takes the waiting ones, one per namespace, in
 * arrival order (a namespace's next change goes in a later group, which waits for its lock). A group locks all its namespaces in one statement, applies each change after a
 * savepoint (a refused change is rolled back alone and answered with its error), and sends one
 * COMMIT: one round trip to open, one to write and commit, one fsync, for every change in it. No
 * change is answered before that COMMIT returns, so a crash loses only unanswered changes, and
 * takes all of a group or none of it. When the shard is idle a change is a group of one at once.
 */
export class NamespaceTxns {
  private readonly queues = new Map<unknown, ShardQueue>();

  constructor(
    private readonly placement: Pick<NamespacePlacement, "shardFor" | "forgetPlacement">,
    private readonly onAdvance: (namespaceId: bigint, cursor: bigint) => Promise<void>,
    private readonly groups: GroupCommitSettings = { members: 1, slots: 1 },
  ) {}

  /**
   * Runs fn in one transaction on the namespace's shard with its state row locked. Writes to a
   * namespace that is switching shards wait (briefly) and then go to the new shard. With
   * `grouped`, fn may share its transaction with other namespaces' changes (see above): it must
   * write only through the transaction and throw a ConnectError to refuse.
   */
  async mutate<T>(ns: bigint, fn: TxnBody<T>, prefetch?: Prefetch, opts: { grouped?: boolean } = {}): Promise<T> {
    if (opts.grouped && this.groups.members > 1) {
      const pool = await this.placement.shardFor(ns);
      return new Promise<T>((resolve, reject) => {
        const queue = this.queueOf(pool);
        queue.waiting.push({ ns, fn, prefetch, resolve: resolve as (v: unknown) => void, reject });
        this.pump(pool, queue);
      });
    }
    const deadline = performance.now() + MOVE_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      const pool = await this.placement.shardFor(ns);
      const conn = await pool.getConnection();
      try {
        // One round trip opens the transaction, takes the namespace's lock and reads ahead.
        const open = opening([{ ns, prefetch }]);
        const [results] = await conn.query<RowDataPacket[][]>(open.sql, open.params);
        const state = results[2];
        if (state.length === 0) throw notFound(`namespace ${ns} has no state on its shard`);
        if (state[0].state !== "active") throw new NamespaceRelocating(state[0].state);
        const txn = begin(new TxnSession(conn), ns, state[0], prefetch, results[4]);
        const out = await fn(txn, prefetch ? results[3] : []);
        settle(txn);
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

  private queueOf(pool: unknown): ShardQueue {
    let queue = this.queues.get(pool);
    if (!queue) {
      queue = { waiting: [], inFlight: 0 };
      this.queues.set(pool, queue);
    }
    return queue;
  }

  /** Starts groups while the shard has free slots and changes wait. */
  private pump(pool: Pool, queue: ShardQueue): void {
    while (queue.inFlight < this.groups.slots && queue.waiting.length > 0) {
      const { group, rest } = takeGroup(queue.waiting, this.groups.members);
      queue.waiting = rest;
      queue.inFlight++;
      void this.runGroup(pool, group).finally(() => {
        queue.inFlight--;
        this.pump(pool, queue);
      });
    }
  }

  /** One group transaction; never throws (every member is answered, or sent on alone). */
  private async runGroup(pool: Pool, group: Member[]): Promise<void> {
    const applied: { m: Member; txn: NamespaceTxn; out: unknown }[] = [];
    const refused = new Set<Member>();
    const alone: Member[] = [];
    let committing = false;
    let conn: PoolConnection | undefined;
    try {
      conn = await pool.getConnection();
      const session = new TxnSession(conn);
      const open = opening(group);
      const [results] = await conn.query<RowDataPacket[][]>(open.sql, open.params);
      const states = new Map(results[2].map((r) => [BigInt(r.namespace_id), r]));
      let at = 3;
      for (const m of group) {
        const ahead = m.prefetch ? [results[at], results[at + 1]] : undefined;
        if (m.prefetch) at += 2;
        const state = states.get(m.ns);
        if (!state || state.state !== "active") {
          // Moving (or gone): the path for one namespace waits for the move and says what is wrong.
          alone.push(m);
          this.groups.alone?.("relocating");
          continue;
        }
        const txn = begin(session, m.ns, state, m.prefetch, ahead?.[1]);
        const mark = txn.mark();
        try {
          const out = await m.fn(txn, ahead?.[0] ?? []);
          settle(txn);
          applied.push({ m, txn, out });
        } catch (err) {
          if (!(err instanceof ConnectError)) throw err;
          await txn.rollbackTo(mark);
          refused.add(m);
          m.reject(err);
        }
      }
      committing = true;
      session.write("COMMIT", []);
      await session.flush();
      conn.release();
      conn = undefined;
    } catch (err) {
      if (conn) {
        await conn.query("ROLLBACK").catch(() => undefined);
        conn.release();
      }
      for (const m of group) {
        if (refused.has(m) || alone.includes(m)) continue;
        if (committing) {
          // The COMMIT itself failed: whether it took is unknown, so nothing is retried here (a
          // caller's request id makes its own retry safe).
          m.reject(err);
        } else {
          // Nothing of the group was written: each change goes on alone (a deadlock or a shard
          // error meets each one on its own; a change that broke the group fails alone).
          alone.push(m);
          this.groups.alone?.("group_failed");
        }
      }
      applied.length = 0;
    }
    if (applied.length > 0) this.groups.observe?.(applied.length + refused.size);
    for (const { m, txn, out } of applied) {
      const advanced = txn.cursor !== txn.startCursor ? this.onAdvance(m.ns, txn.cursor) : Promise.resolve();
      advanced.then(() => m.resolve(out), m.reject);
    }
    for (const m of alone) this.mutate(m.ns, m.fn, m.prefetch).then(m.resolve, m.reject);
  }
}
