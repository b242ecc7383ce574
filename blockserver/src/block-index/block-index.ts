import type { Pool, ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { inTransaction, ShardPools, type TlsConfig } from "@satchel/proto";

export type BlockState = "writing" | "live" | "deleting";

export interface BlockRecord {
  hash: Buffer;
  size: number;
  dataShards: number;
  parityShards: number;
  shardSize: number;
  state: BlockState;
  shards: ShardPlacement[];
}

/**
 * What the index last learnt about a shard: a hint, never a verdict (see quorum.ts).
 * - ok: stored on its node when last checked; rebuilt: repair wrote it on a node other than its
 *   first home (also stored);
 * - missing: the write could not store it (its node was down);
 * - unreachable: its node did not answer when last tried: nothing is known about the bytes;
 * - gone: proven absent or corrupt on a live node.
 */
export type ShardState = "ok" | "rebuilt" | "missing" | "unreachable" | "gone";

export const isStored = (state: ShardState): boolean => state === "ok" || state === "rebuilt";

export interface ShardPlacement {
  index: number;
  node: string;
  checksum: number;
  state: ShardState;
}

/** A block waiting in the durable repair queue. */
export interface RepairTask {
  hash: Buffer;
  reason: string;
  attempts: number;
}

/**
 * The block index: one row per block and one per shard, sharded by block hash over the metadata
 * MariaDB shards (a different key from namespaces, so no namespace makes a hot spot).
 */
export class BlockIndex {
  private constructor(
    private readonly shards: Pool[],
    private readonly directory: Pool,
  ) {}

  static async open(directoryUrl: string, tls: TlsConfig | undefined): Promise<BlockIndex> {
    const pools = await ShardPools.open(directoryUrl, { shardConnections: 8, directoryConnections: 2, tls });
    return new BlockIndex(pools.shards, pools.directory);
  }

  /** Storage nodes an operator declared dead. */
  async deadNodes(): Promise<string[]> {
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT name FROM storage_nodes WHERE state = 'dead'");
    return rows.map((r) => r.name as string);
  }

  async setNodeState(name: string, state: "active" | "dead"): Promise<void> {
    await this.directory.query(
      "INSERT INTO storage_nodes (name, state) VALUES (?, ?) ON DUPLICATE KEY UPDATE state = VALUES(state)", [name, state],
    );
  }

  private shardOf(hash: Uint8Array): Pool {
    return this.shards[((hash[0] << 8) | hash[1]) % this.shards.length];
  }

  async get(hash: Buffer): Promise<BlockRecord | undefined> {
    const pool = this.shardOf(hash);
    const [rows] = await pool.query<RowDataPacket[]>(
      "SELECT size, data_shards, parity_shards, shard_size, state FROM blocks WHERE hash = ?", [hash],
    );
    if (rows.length === 0) return undefined;
    const [shardRows] = await pool.query<RowDataPacket[]>(
      "SELECT shard_index, node, checksum, state FROM block_shards WHERE hash = ? ORDER BY shard_index", [hash],
    );
    const r = rows[0];
    return {
      hash,
      size: r.size,
      dataShards: r.data_shards,
      parityShards: r.parity_shards,
      shardSize: r.shard_size,
      state: r.state,
      shards: shardRows.map((s) => ({ index: s.shard_index, node: s.node, checksum: s.checksum, state: s.state })),
    };
  }

  /** Which of these hashes are live, answered with one query per shard. */
  async live(hashes: Buffer[]): Promise<boolean[]> {
    const byShard = this.byShard(hashes);
    const present = new Array<boolean>(hashes.length).fill(false);
    await Promise.all([...byShard].map(async ([pool, indexes]) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        "SELECT hash FROM blocks WHERE state = 'live' AND hash IN (?)", [indexes.map((i) => hashes[i])],
      );
      const live = new Set(rows.map((r) => (r.hash as Buffer).toString("hex")));
      for (const i of indexes) present[i] = live.has(hashes[i].toString("hex"));
    }));
    return present;
  }

  /** Records that a user sent a block's bytes (verified) just now. */
  async recordUpload(hash: Buffer, userId: bigint): Promise<void> {
    await this.shardOf(hash).query(
      "INSERT INTO block_uploads (hash, user_id) VALUES (?, ?) ON DUPLICATE KEY UPDATE uploaded_at = CURRENT_TIMESTAMP(3)", [hash, userId],
    );
  }

  /**
   * Which of these hashes are live and were sent by this user within the window: blocks it has
   * shown it holds. One query per shard.
   */
  async liveUploadedBy(hashes: Buffer[], userId: bigint, windowSeconds: number): Promise<boolean[]> {
    const present = new Array<boolean>(hashes.length).fill(false);
    await Promise.all([...this.byShard(hashes)].map(async ([pool, indexes]) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        `SELECT b.hash FROM blocks b JOIN block_uploads u ON u.hash = b.hash AND u.user_id = ?
           WHERE b.state = 'live' AND b.hash IN (?) AND u.uploaded_at > NOW(3) - INTERVAL ? SECOND`,
        [userId, indexes.map((i) => hashes[i]), windowSeconds],
      );
      const live = new Set(rows.map((r) => (r.hash as Buffer).toString("hex")));
      for (const i of indexes) present[i] = live.has(hashes[i].toString("hex"));
    }));
    return present;
  }

  /** Forgets uploads older than the window on one index shard; returns how many went. */
  async sweepUploads(shard: number, windowSeconds: number, limit: number): Promise<number> {
    const [res] = await this.shards[shard].query<ResultSetHeader>(
      "DELETE FROM block_uploads WHERE uploaded_at < NOW(3) - INTERVAL ? SECOND LIMIT ?", [windowSeconds, limit],
    );
    return res.affectedRows;
  }

  /**
   * Records that a write has begun. A block left in 'writing' (a crashed write) is never served;
   * a later write of the same hash takes it over.
   */
  async beginWrite(rec: Omit<BlockRecord, "state" | "shards">): Promise<void> {
    await this.shardOf(rec.hash).query(
      `INSERT INTO blocks (hash, size, data_shards, parity_shards, shard_size, state) VALUES (?, ?, ?, ?, ?, 'writing')
       ON DUPLICATE KEY UPDATE size = VALUES(size), data_shards = VALUES(data_shards), parity_shards = VALUES(parity_shards),
         shard_size = VALUES(shard_size), state = IF(state = 'live', 'live', 'writing')`,
      [rec.hash, rec.size, rec.dataShards, rec.parityShards, rec.shardSize],
    );
  }

  /** Records where every shard went and makes the block live, in one transaction. */
  async commitWrite(hash: Buffer, shards: ShardPlacement[]): Promise<void> {
    await inTransaction(this.shardOf(hash), async (conn) => {
      // An upsert, not delete-then-insert: deleting absent rows takes gap locks that deadlock
      // concurrent writes of neighbouring hashes.
      await conn.query(
        `INSERT INTO block_shards (hash, shard_index, node, checksum, state) VALUES ?
         ON DUPLICATE KEY UPDATE node = VALUES(node), checksum = VALUES(checksum), state = VALUES(state)`,
        [shards.map((s) => [hash, s.index, s.node, s.checksum, s.state])],
      );
      await conn.query("UPDATE blocks SET state = 'live', verified_at = CURRENT_TIMESTAMP(3) WHERE hash = ?", [hash]);
    });
  }

  /** Records a shard's home and state (after a repair, or what a read, scrub or repair found). */
  async setShard(hash: Buffer, shard: ShardPlacement): Promise<void> {
    await this.shardOf(hash).query(
      "UPDATE block_shards SET node = ?, checksum = ?, state = ? WHERE hash = ? AND shard_index = ?",
      [shard.node, shard.checksum, shard.state, hash, shard.index],
    );
  }

  /**
   * Queues for repair, durably, every live block with a shard the index does not record as stored
   * (missing, unreachable, gone), except shards on `skipNodes` (down: they wait for the node): a
   * restart, or a crash between a finding and its queue entry, loses no repair. Blocks already
   * queued keep their place.
   */
  async queueUnhealthyBlocks(reason: string, skipNodes: string[] = []): Promise<number> {
    let queued = 0;
    await Promise.all(this.shards.map(async (pool) => {
      const [res] = await pool.query<ResultSetHeader>(
        `INSERT IGNORE INTO repair_queue (hash, reason)
         SELECT DISTINCT s.hash, ? FROM block_shards s JOIN blocks b ON b.hash = s.hash
          WHERE s.state IN ('missing', 'unreachable', 'gone') AND b.state = 'live' AND b.lost_at IS NULL AND s.node NOT IN (?)`,
        [reason, skipNodes.length ? skipNodes : [""]],
      );
      queued += res.affectedRows;
    }));
    return queued;
  }

  /**
   * Queues every live block with a shard on `node` (all of them, or only those not recorded as
   * stored), and makes the ones already queued due now: a node came back, or its disk was replaced.
   */
  async queueBlocksOnNode(node: string, reason: string, onlyUnhealthy: boolean): Promise<number> {
    let queued = 0;
    const filter = onlyUnhealthy ? "AND s.state IN ('missing', 'unreachable', 'gone')" : "";
    await Promise.all(this.shards.map(async (pool) => {
      const [res] = await pool.query<ResultSetHeader>(
        `INSERT INTO repair_queue (hash, reason)
         SELECT DISTINCT s.hash, ? FROM block_shards s JOIN blocks b ON b.hash = s.hash
          WHERE s.node = ? AND b.state = 'live' AND b.lost_at IS NULL ${filter}
         ON DUPLICATE KEY UPDATE next_attempt_at = LEAST(next_attempt_at, CURRENT_TIMESTAMP(3))`, [reason, node],
      );
      queued += res.affectedRows;
    }));
    return queued;
  }

  /** Adds blocks to the repair queue (or makes them due now if queued already). */
  async queueRepair(hashes: Buffer[], reason: string): Promise<void> {
    await Promise.all([...this.byShard(hashes)].map(([pool, indexes]) => pool.query(
      `INSERT INTO repair_queue (hash, reason) VALUES ?
       ON DUPLICATE KEY UPDATE next_attempt_at = LEAST(next_attempt_at, CURRENT_TIMESTAMP(3))`,
      [indexes.map((i) => [hashes[i], reason.slice(0, 128)])],
    )));
  }

  /** Queued repairs that are due, oldest first, from every index shard. */
  async dueRepairs(limit: number): Promise<RepairTask[]> {
    const found = await Promise.all(this.shards.map(async (pool) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        "SELECT hash, reason, attempts FROM repair_queue WHERE next_attempt_at <= CURRENT_TIMESTAMP(3) ORDER BY next_attempt_at LIMIT ?", [limit],
      );
      return rows.map((r) => ({ hash: r.hash as Buffer, reason: r.reason as string, attempts: Number(r.attempts) }));
    }));
    return found.flat().slice(0, limit);
  }

  /** A repair is finished (every shard stored, the block proven lost, or the block gone from the index). */
  async finishRepair(hash: Buffer): Promise<void> {
    await this.shardOf(hash).query("DELETE FROM repair_queue WHERE hash = ?", [hash]);
  }

  /** A repair could not finish yet: try again after `delayMs`. */
  async retryRepair(hash: Buffer, delayMs: number, result: string): Promise<void> {
    await this.shardOf(hash).query(
      `UPDATE repair_queue SET attempts = attempts + 1, last_result = ?,
         next_attempt_at = CURRENT_TIMESTAMP(3) + INTERVAL ? MICROSECOND WHERE hash = ?`,
      [result.slice(0, 512), Math.round(delayMs * 1000), hash],
    );
  }

  async repairQueueLength(): Promise<number> {
    const counts = await Promise.all(this.shards.map(async (pool) => {
      const [rows] = await pool.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM repair_queue");
      return Number(rows[0].n);
    }));
    return counts.reduce((a, b) => a + b, 0);
  }

  /**
   * One page of live blocks of one index shard in hash order, for the scrubber's walk.
   * Returns the hashes after `after` (exclusive).
   */
  async livePage(shard: number, after: Buffer, limit: number): Promise<Buffer[]> {
    const [rows] = await this.shards[shard].query<RowDataPacket[]>(
      "SELECT hash FROM blocks WHERE state = 'live' AND hash > ? ORDER BY hash LIMIT ?", [after, limit],
    );
    return rows.map((r) => r.hash as Buffer);
  }

  async liveCount(): Promise<number> {
    const counts = await Promise.all(this.shards.map(async (pool) => {
      const [rows] = await pool.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM blocks WHERE state = 'live'");
      return Number(rows[0].n);
    }));
    return counts.reduce((a, b) => a + b, 0);
  }

  /**
   * Live blocks by how many of their shards are stored ('ok') on the given usable nodes: how many
   * have fewer than `full` (degraded: repair pending) and fewer than `minimum` (data at risk).
   */
  async redundancy(usableNodes: string[], full: number, minimum: number): Promise<{ degraded: number; atRisk: number }> {
    const out = { degraded: 0, atRisk: 0 };
    await Promise.all(this.shards.map(async (pool) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        `SELECT SUM(healthy < ?) AS degraded, SUM(healthy < ?) AS at_risk FROM (
           SELECT b.hash, COALESCE(SUM(s.state IN ('ok', 'rebuilt') AND s.node IN (?)), 0) AS healthy
             FROM blocks b LEFT JOIN block_shards s ON s.hash = b.hash
            WHERE b.state = 'live' GROUP BY b.hash) t`,
        [full, minimum, usableNodes.length ? usableNodes : [""]],
      );
      out.degraded += Number(rows[0].degraded ?? 0);
      out.atRisk += Number(rows[0].at_risk ?? 0);
    }));
    return out;
  }

  get shardCount(): number {
    return this.shards.length;
  }

  /** Every shard was found stored (or rewritten): the block is whole. */
  async markVerified(hash: Buffer): Promise<void> {
    await this.shardOf(hash).query("UPDATE blocks SET verified_at = CURRENT_TIMESTAMP(3), lost_at = NULL WHERE hash = ?", [hash]);
  }

  /** More than m shards are proven gone: sweeps stop re-queueing the block. */
  async markLost(hash: Buffer): Promise<void> {
    await this.shardOf(hash).query("UPDATE blocks SET lost_at = COALESCE(lost_at, CURRENT_TIMESTAMP(3)) WHERE hash = ?", [hash]);
  }

  /**
   * Reserves the live blocks among `hashes` for a commit: they cannot be collected before the lease
   * ends. Row locks order this against the collector marking a block 'deleting'.
   */
  async reserve(hashes: Buffer[], leaseSeconds: number): Promise<boolean[]> {
    const present = new Array<boolean>(hashes.length).fill(false);
    await Promise.all([...this.byShard(hashes)].map(async ([pool, indexes]) => {
      const wanted = indexes.map((i) => hashes[i]);
      // No transaction: each statement is atomic on its own. The lease is only extended when less
      // than half of it is left, so a block many commits share (a hot row) is rarely written.
      await pool.query(
        `UPDATE blocks SET reserved_until = NOW(3) + INTERVAL ? SECOND
          WHERE hash IN (?) AND state = 'live' AND (reserved_until IS NULL OR reserved_until < NOW(3) + INTERVAL ? SECOND)`,
        [leaseSeconds, wanted, leaseSeconds / 2],
      );
      // Present means live and protected: collection skips blocks whose lease has not run out.
      const [rows] = await pool.query<RowDataPacket[]>(
        "SELECT hash FROM blocks WHERE hash IN (?) AND state = 'live' AND reserved_until > NOW(3)", [wanted],
      );
      const set = new Set(rows.map((r) => (r.hash as Buffer).toString("hex")));
      for (const i of indexes) present[i] = set.has(hashes[i].toString("hex"));
    }));
    return present;
  }

  /**
   * Applies reference changes exactly once each: a change's (source, sequence) is recorded in the
   * same transaction as the count it moves. Returns how many were new, and the hashes of changes
   * that named a block the index does not have.
   */
  async adjustReferences(source: string, changes: { sequence: bigint; hash: Buffer; delta: number }[]): Promise<{ applied: number; unknown: Buffer[] }> {
    let applied = 0;
    const unknown: Buffer[] = [];
    await Promise.all([...this.byShard(changes.map((c) => c.hash))].map(async ([pool, indexes]) => {
      await inTransaction(pool, async (conn) => {
        for (const i of indexes) {
          const c = changes[i];
          const [ins] = await conn.query<ResultSetHeader>(
            "INSERT IGNORE INTO reference_changes_applied (source, sequence) VALUES (?, ?)", [source, c.sequence],
          );
          if (ins.affectedRows === 0) continue;
          // SET runs left to right: zero_since sees the new count.
          const [upd] = await conn.query<ResultSetHeader>(
            "UPDATE blocks SET ref_count = ref_count + ?, zero_since = IF(ref_count <= 0, CURRENT_TIMESTAMP(3), NULL) WHERE hash = ?",
            [c.delta, c.hash],
          );
          if (upd.affectedRows === 0) unknown.push(c.hash);
          applied++;
        }
      });
    }));
    return { applied, unknown };
  }

  async referenceCounts(hashes: Buffer[]): Promise<Map<string, { refCount: number; state: BlockState }>> {
    const out = new Map<string, { refCount: number; state: BlockState }>();
    await Promise.all([...this.byShard(hashes)].map(async ([pool, indexes]) => {
      const [rows] = await pool.query<RowDataPacket[]>("SELECT hash, ref_count, state FROM blocks WHERE hash IN (?)", [indexes.map((i) => hashes[i])]);
      for (const r of rows) out.set((r.hash as Buffer).toString("hex"), { refCount: Number(r.ref_count), state: r.state });
    }));
    return out;
  }

  /** One page of every block with its count, in (index shard, hash) order. */
  async listReferenceCounts(shard: number, after: Buffer, limit: number): Promise<{ hash: Buffer; refCount: number; state: BlockState }[]> {
    const [rows] = await this.shards[shard].query<RowDataPacket[]>(
      "SELECT hash, ref_count, state FROM blocks WHERE hash > ? ORDER BY hash LIMIT ?", [after, limit],
    );
    return rows.map((r) => ({ hash: r.hash as Buffer, refCount: Number(r.ref_count), state: r.state }));
  }

  /** Sets counts outright (the reconciler's correction). */
  async setReferenceCount(hash: Buffer, refCount: number): Promise<void> {
    await this.shardOf(hash).query(
      "UPDATE blocks SET ref_count = ?, zero_since = IF(ref_count <= 0, COALESCE(zero_since, CURRENT_TIMESTAMP(3)), NULL) WHERE hash = ?",
      [refCount, hash],
    );
  }

  /** Blocks of one index shard that no version references, past their grace, not reserved. */
  async collectable(shard: number, graceSeconds: number, limit: number): Promise<Buffer[]> {
    const [rows] = await this.shards[shard].query<RowDataPacket[]>(
      `SELECT hash FROM blocks WHERE state = 'live' AND ref_count <= 0
         AND COALESCE(zero_since, created_at) <= NOW(3) - INTERVAL ? SECOND
         AND (reserved_until IS NULL OR reserved_until < NOW(3)) LIMIT ?`,
      [graceSeconds, limit],
    );
    return rows.map((r) => r.hash as Buffer);
  }

  /** Blocks left in 'deleting' (a collector that stopped half-way), to finish. */
  async deleting(shard: number, limit: number): Promise<Buffer[]> {
    const [rows] = await this.shards[shard].query<RowDataPacket[]>("SELECT hash FROM blocks WHERE state = 'deleting' LIMIT ?", [limit]);
    return rows.map((r) => r.hash as Buffer);
  }

  /** Marks a block 'deleting' if, under its row lock, it is still collectable. */
  async beginDelete(hash: Buffer, graceSeconds: number): Promise<boolean> {
    const [res] = await this.shardOf(hash).query<ResultSetHeader>(
      `UPDATE blocks SET state = 'deleting' WHERE hash = ? AND state = 'live' AND ref_count <= 0
         AND COALESCE(zero_since, created_at) <= NOW(3) - INTERVAL ? SECOND
         AND (reserved_until IS NULL OR reserved_until < NOW(3))`,
      [hash, graceSeconds],
    );
    return res.affectedRows === 1;
  }

  /** Removes a deleted block's rows once its shards are gone. */
  async finishDelete(hash: Buffer): Promise<void> {
    await inTransaction(this.shardOf(hash), async (conn) => {
      const [res] = await conn.query<ResultSetHeader>("DELETE FROM blocks WHERE hash = ? AND state = 'deleting'", [hash]);
      if (res.affectedRows === 1) {
        await conn.query("DELETE FROM block_shards WHERE hash = ?", [hash]);
        await conn.query("DELETE FROM repair_queue WHERE hash = ?", [hash]);
        await conn.query("DELETE FROM block_uploads WHERE hash = ?", [hash]);
      }
    });
  }

  private byShard(hashes: Buffer[]): Map<Pool, number[]> {
    const byShard = new Map<Pool, number[]>();
    hashes.forEach((h, i) => {
      const pool = this.shardOf(h);
      const list = byShard.get(pool) ?? [];
      list.push(i);
      byShard.set(pool, list);
    });
    return byShard;
  }

  async close(): Promise<void> {
    await Promise.all([...this.shards, this.directory].map((p) => p.end()));
  }
}

