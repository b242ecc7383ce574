import type { Pool, ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { indexShardOf, inTransaction, ShardPools, type TlsConfig } from "@satchel/proto";
import { VolumeIndex } from "./volume-index.js";

export type BlockState = "writing" | "live" | "deleting";

export interface BlockRecord {
  hash: Buffer;
  size: number;
  dataShards: number;
  parityShards: number;
  shardSize: number;
  state: BlockState;
  shards: ShardPlacement[];
  /** Repair proved more than m shards gone (blocks.lost_at): only an upload of its bytes heals it. */
  lost?: boolean;
  /** A block packed in a volume: its record's place (it has no shards of its own). */
  packed?: { volumeId: number; offset: number };
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

/** What a source of reference changes (a metadata shard's relay) last reported; see AdjustReferences. */
export interface ReferenceSourceState {
  source: string;
  /** Every change it committed before this time (Unix ms, a blockserver's clock) is applied; 0: no claim yet. */
  deliveredThroughMs: number;
  oldestPendingSeconds: number;
  /** Since its last report; Infinity when it never reported. */
  silentSeconds: number;
}

/**
 * Blocks at zero that collection may take: past their grace, not reserved, and reached zero (or
 * were last reserved) before `deliveredThroughMs`, when every source of reference changes had
 * delivered everything it committed. Both are conditions on a row of `blocks`.
 */
const COLLECTABLE = `state = 'live' AND ref_count <= 0
  AND COALESCE(zero_since, created_at) <= NOW(3) - INTERVAL ? SECOND
  AND (reserved_until IS NULL OR reserved_until < NOW(3))`;
const SETTLED = `GREATEST(COALESCE(zero_since, created_at), COALESCE(reserved_until, created_at)) < FROM_UNIXTIME(? / 1000)`;

/** A block waiting in the durable repair queue. */
export interface RepairTask {
  hash: Buffer;
  reason: string;
  attempts: number;
}

/**
 * A repairer's claim on a queued block: while its generation is the entry's current one, this
 * repairer alone may record the block's shards and finish or retry the entry. Every claim takes a
 * new generation, so a holder whose lease ran out and was taken over finds its writes refused.
 */
export interface RepairClaim {
  hash: Buffer;
  generation: number;
  holder: string;
}

/**
 * The block index: one row per block and one per shard, in the blockserver's own databases, sharded
 * by block hash (see indexShardOf); its directory lists the index shards, the storage nodes' states
 * and the sources of reference changes.
 */
export class BlockIndex {
  /** Volumes, their segments and the packed blocks' rows (see volume-index.ts). */
  readonly volumes: VolumeIndex;

  private constructor(
    private readonly shards: Pool[],
    private readonly directory: Pool,
  ) {
    this.volumes = new VolumeIndex(directory, (h) => this.shardOf(h), (hs) => this.byShard(hs));
  }

  static async open(blockIndexUrl: string, tls: TlsConfig | undefined): Promise<BlockIndex> {
    // Several statements in one round trip where a call needs them together (reserve, adjust):
    // every value goes through placeholders, so nothing a caller sends is read as SQL.
    const pools = await ShardPools.open(blockIndexUrl, { shardConnections: 8, directoryConnections: 2, tls, multipleStatements: true, mapTable: "index_shards" });
    return new BlockIndex(pools.shards, pools.directory);
  }

  /** Records what a source of reference changes reported with its latest batch. */
  async recordSourceReport(source: string, deliveredThroughMs: bigint, oldestPendingSeconds: number): Promise<void> {
    // A claim only moves forward: a late retry of an older batch cannot take it back.
    await this.directory.query(
      `INSERT INTO reference_sources (source, delivered_through_ms, oldest_pending_seconds, reported_at) VALUES (?, ?, ?, CURRENT_TIMESTAMP(3))
       ON DUPLICATE KEY UPDATE delivered_through_ms = GREATEST(delivered_through_ms, VALUES(delivered_through_ms)),
         oldest_pending_seconds = VALUES(oldest_pending_seconds), reported_at = CURRENT_TIMESTAMP(3)`,
      [source, deliveredThroughMs, oldestPendingSeconds],
    );
  }

  /**
   * Every source that must deliver before collection (registered as expected: one per metadata
   * shard), with what it last reported (never: silent forever).
   */
  async referenceSources(): Promise<ReferenceSourceState[]> {
    const [rows] = await this.directory.query<RowDataPacket[]>(
      `SELECT source, delivered_through_ms, oldest_pending_seconds,
         TIMESTAMPDIFF(MICROSECOND, reported_at, NOW(3)) / 1e6 AS silent FROM reference_sources WHERE expected ORDER BY source`,
    );
    return rows.map((r) => r.silent === null
      ? { source: r.source as string, deliveredThroughMs: 0, oldestPendingSeconds: 0, silentSeconds: Infinity }
      : { source: r.source as string, deliveredThroughMs: Number(r.delivered_through_ms), oldestPendingSeconds: Number(r.oldest_pending_seconds), silentSeconds: Number(r.silent) });
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
    return this.shards[indexShardOf(hash, this.shards.length)];
  }

  async get(hash: Buffer): Promise<BlockRecord | undefined> {
    const pool = this.shardOf(hash);
    const [rows] = await pool.query<RowDataPacket[]>(
      "SELECT size, data_shards, parity_shards, shard_size, state, lost_at, volume_id, volume_offset FROM blocks WHERE hash = ?", [hash],
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
      lost: r.lost_at !== null,
      ...(r.volume_id !== null ? { packed: { volumeId: Number(r.volume_id), offset: Number(r.volume_offset) } } : {}),
    };
  }

  /**
   * Which of these hashes are live and not recorded lost, answered with one query per shard. A lost
   * block answers absent, so a client that holds its bytes uploads them (and heals it).
   */
  async live(hashes: Buffer[]): Promise<boolean[]> {
    const byShard = this.byShard(hashes);
    const present = new Array<boolean>(hashes.length).fill(false);
    await Promise.all([...byShard].map(async ([pool, indexes]) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        "SELECT hash FROM blocks WHERE state = 'live' AND lost_at IS NULL AND hash IN (?)", [indexes.map((i) => hashes[i])],
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
           WHERE b.state = 'live' AND b.lost_at IS NULL AND b.hash IN (?) AND u.uploaded_at > NOW(3) - INTERVAL ? SECOND`,
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
   * a later write of the same hash takes it over and starts its clock again (write_started_at: the
   * stale-write sweep removes rows whose write began too long ago).
   */
  async beginWrite(rec: Omit<BlockRecord, "state" | "shards" | "lost">): Promise<void> {
    // SET runs left to right: write_started_at still sees the old state.
    await this.shardOf(rec.hash).query(
      `INSERT INTO blocks (hash, size, data_shards, parity_shards, shard_size, state, write_started_at) VALUES (?, ?, ?, ?, ?, 'writing', CURRENT_TIMESTAMP(3))
       ON DUPLICATE KEY UPDATE size = VALUES(size), data_shards = VALUES(data_shards), parity_shards = VALUES(parity_shards),
         shard_size = VALUES(shard_size), write_started_at = IF(state = 'live', write_started_at, CURRENT_TIMESTAMP(3)),
         state = IF(state = 'live', 'live', 'writing')`,
      [rec.hash, rec.size, rec.dataShards, rec.parityShards, rec.shardSize],
    );
  }

  /**
   * Records where every shard went and makes the block live, in one transaction; false (nothing
   * recorded) when the block's row is no longer being written: the stale-write sweep removed it
   * (this write outlived its bound), so its shards are orphans and the write must be sent again.
   */
  async commitWrite(hash: Buffer, shards: ShardPlacement[]): Promise<boolean> {
    return inTransaction(this.shardOf(hash), async (conn) => {
      // The block's row first: its lock orders this against the sweep, which deletes under it.
      const [res] = await conn.query<ResultSetHeader>(
        "UPDATE blocks SET state = 'live', verified_at = CURRENT_TIMESTAMP(3) WHERE hash = ? AND state IN ('writing', 'live')", [hash],
      );
      if (res.affectedRows === 0) return false;
      // An upsert, not delete-then-insert: deleting absent rows takes gap locks that deadlock
      // concurrent writes of neighbouring hashes.
      await conn.query(
        `INSERT INTO block_shards (hash, shard_index, node, checksum, state) VALUES ?
         ON DUPLICATE KEY UPDATE node = VALUES(node), checksum = VALUES(checksum), state = VALUES(state)`,
        [shards.map((s) => [hash, s.index, s.node, s.checksum, s.state])],
      );
      return true;
    });
  }

  /**
   * Removes up to `limit` blocks of one index shard still in 'writing' whose write began more than
   * `maxAgeSeconds` ago (writes that died); returns how many went. Each is deleted under the same
   * condition, re-read under its row lock, so a write that began again meanwhile keeps its row. A
   * block with references is never removed here (a write never takes any; one would be a bug to see).
   */
  async sweepStaleWrites(shard: number, maxAgeSeconds: number, limit: number): Promise<number> {
    const stale = `state = 'writing' AND ref_count <= 0 AND COALESCE(write_started_at, updated_at) < NOW(3) - INTERVAL ? SECOND`;
    const [rows] = await this.shards[shard].query<RowDataPacket[]>(`SELECT hash FROM blocks WHERE ${stale} LIMIT ?`, [maxAgeSeconds, limit]);
    let swept = 0;
    for (const { hash } of rows) {
      await inTransaction(this.shards[shard], async (conn) => {
        const [res] = await conn.query<ResultSetHeader>(`DELETE FROM blocks WHERE hash = ? AND ${stale}`, [hash, maxAgeSeconds]);
        if (res.affectedRows === 0) return;
        // A write records no shards before it commits, but a 'deleting' block a write took over has some.
        await conn.query("DELETE FROM block_shards WHERE hash = ?", [hash]);
        await conn.query("DELETE FROM repair_queue WHERE hash = ?", [hash]);
        swept++;
      });
    }
    return swept;
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
   * An entry claimed meanwhile is marked requeued: its repair started before this news.
   */
  async queueBlocksOnNode(node: string, reason: string, onlyUnhealthy: boolean): Promise<number> {
    let queued = 0;
    const filter = onlyUnhealthy ? "AND s.state IN ('missing', 'unreachable', 'gone')" : "";
    await Promise.all(this.shards.map(async (pool) => {
      const [res] = await pool.query<ResultSetHeader>(
        `INSERT INTO repair_queue (hash, reason)
         SELECT DISTINCT s.hash, ? FROM block_shards s JOIN blocks b ON b.hash = s.hash
          WHERE s.node = ? AND b.state = 'live' AND b.lost_at IS NULL ${filter}
         ON DUPLICATE KEY UPDATE next_attempt_at = LEAST(next_attempt_at, CURRENT_TIMESTAMP(3)), requeued = 1`, [reason, node],
      );
      queued += res.affectedRows;
    }));
    return queued;
  }

  /**
   * Adds blocks to the repair queue (or makes them due now if queued already). A finding about a
   * block whose repair is under way marks its entry requeued, so that repair's finish keeps it.
   */
  async queueRepair(hashes: Buffer[], reason: string): Promise<void> {
    await Promise.all([...this.byShard(hashes)].map(([pool, indexes]) => pool.query(
      `INSERT INTO repair_queue (hash, reason) VALUES ?
       ON DUPLICATE KEY UPDATE next_attempt_at = LEAST(next_attempt_at, CURRENT_TIMESTAMP(3)), requeued = 1`,
      [indexes.map((i) => [hashes[i], reason.slice(0, 128)])],
    )));
  }

  /** Queued repairs that are due and not claimed (or whose claim ran out), oldest first, from every index shard. */
  async dueRepairs(limit: number): Promise<RepairTask[]> {
    const found = await Promise.all(this.shards.map(async (pool) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        `SELECT hash, reason, attempts FROM repair_queue WHERE next_attempt_at <= CURRENT_TIMESTAMP(3)
           AND (claim_until IS NULL OR claim_until < CURRENT_TIMESTAMP(3)) ORDER BY next_attempt_at LIMIT ?`, [limit],
      );
      return rows.map((r) => ({ hash: r.hash as Buffer, reason: r.reason as string, attempts: Number(r.attempts) }));
    }));
    return found.flat().slice(0, limit);
  }

  /**
   * Claims a due queue entry for `leaseSeconds` unless another repairer holds it. One atomic UPDATE
   * takes the claim only if none is current, and LAST_INSERT_ID hands back the generation that
   * very statement wrote (on this connection), so two claimers can never both believe they hold it.
   * Generations come from the clock (microseconds, and always above the entry's last one): an entry
   * finished and queued again starts over, and a counter would hand out again the generation a
   * stalled holder of the old entry still carries.
   */
  async claimRepair(hash: Buffer, holder: string, leaseSeconds: number): Promise<RepairClaim | undefined> {
    return this.claim(hash, holder, leaseSeconds, "AND next_attempt_at <= CURRENT_TIMESTAMP(3)");
  }

  /**
   * Queues a block (if it is not queued) and claims it whether due or not (the scrubber or an
   * upload found work on it now); undefined when another repairer holds it.
   */
  async claimRepairNow(hash: Buffer, holder: string, reason: string, leaseSeconds: number): Promise<RepairClaim | undefined> {
    await this.shardOf(hash).query("INSERT IGNORE INTO repair_queue (hash, reason) VALUES (?, ?)", [hash, reason.slice(0, 128)]);
    return this.claim(hash, holder, leaseSeconds, "");
  }

  private async claim(hash: Buffer, holder: string, leaseSeconds: number, due: string): Promise<RepairClaim | undefined> {
    const [res] = await this.shardOf(hash).query<ResultSetHeader>(
      `UPDATE repair_queue SET claimed_by = ?,
         claim_generation = LAST_INSERT_ID(GREATEST(claim_generation + 1, FLOOR(UNIX_TIMESTAMP(NOW(6)) * 1000000))),
         claim_until = CURRENT_TIMESTAMP(3) + INTERVAL ? SECOND, requeued = 0
       WHERE hash = ? AND (claim_until IS NULL OR claim_until < CURRENT_TIMESTAMP(3)) ${due}`,
      [holder.slice(0, 64), leaseSeconds, hash],
    );
    return res.affectedRows === 1 ? { hash, generation: Number(res.insertId), holder } : undefined;
  }

  /** Extends a claim's lease; false when the claim is no longer current (taken over). */
  async renewRepairClaim(claim: RepairClaim, leaseSeconds: number): Promise<boolean> {
    const [res] = await this.shardOf(claim.hash).query<ResultSetHeader>(
      "UPDATE repair_queue SET claim_until = CURRENT_TIMESTAMP(3) + INTERVAL ? SECOND WHERE hash = ? AND claim_generation = ?",
      [leaseSeconds, claim.hash, claim.generation],
    );
    return res.affectedRows === 1;
  }

  /**
   * Records a shard's home and state for the holder of a claim, in one statement conditional on the
   * claim still being current (the entry's row is read under a lock, so a claim taken in between
   * waits for this statement or makes it match nothing); false when the claim was taken over.
   */
  async recordRepairedShard(claim: RepairClaim, shard: ShardPlacement): Promise<boolean> {
    const [res] = await this.shardOf(claim.hash).query<ResultSetHeader>(
      `UPDATE block_shards s JOIN repair_queue q ON q.hash = s.hash SET s.node = ?, s.checksum = ?, s.state = ?
        WHERE s.hash = ? AND s.shard_index = ? AND q.claim_generation = ?`,
      [shard.node, shard.checksum, shard.state, claim.hash, shard.index, claim.generation],
    );
    return res.affectedRows > 0;
  }

  /**
   * A claimed repair is finished (every shard stored, the block proven lost, or gone from the
   * index): its entry goes, unless a finding arrived while it was claimed (then the entry stays,
   * unclaimed and due now). Nothing happens when the claim is no longer current.
   */
  async finishRepair(claim: RepairClaim): Promise<void> {
    const pool = this.shardOf(claim.hash);
    const [res] = await pool.query<ResultSetHeader>(
      "DELETE FROM repair_queue WHERE hash = ? AND claim_generation = ? AND requeued = 0", [claim.hash, claim.generation],
    );
    if (res.affectedRows === 1) return;
    await pool.query(
      `UPDATE repair_queue SET claimed_by = NULL, claim_until = NULL, next_attempt_at = CURRENT_TIMESTAMP(3)
        WHERE hash = ? AND claim_generation = ?`, [claim.hash, claim.generation],
    );
  }

  /**
   * A claimed repair could not finish yet: release the claim and try again after `delayMs` (at once
   * if a finding arrived meanwhile). Nothing happens when the claim is no longer current.
   */
  async retryRepair(claim: RepairClaim, delayMs: number, result: string): Promise<void> {
    await this.shardOf(claim.hash).query(
      `UPDATE repair_queue SET attempts = attempts + 1, last_result = ?, claimed_by = NULL, claim_until = NULL,
         next_attempt_at = IF(requeued, CURRENT_TIMESTAMP(3), CURRENT_TIMESTAMP(3) + INTERVAL ? MICROSECOND)
        WHERE hash = ? AND claim_generation = ?`,
      [result.slice(0, 512), Math.round(delayMs * 1000), claim.hash, claim.generation],
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
      "SELECT hash FROM blocks WHERE state = 'live' AND volume_id IS NULL AND hash > ? ORDER BY hash LIMIT ?", [after, limit],
    );
    return rows.map((r) => r.hash as Buffer);
  }

  async liveCount(): Promise<number> {
    const counts = await Promise.all(this.shards.map(async (pool) => {
      const [rows] = await pool.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM blocks WHERE state = 'live' AND volume_id IS NULL");
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
            WHERE b.state = 'live' AND b.volume_id IS NULL GROUP BY b.hash) t`,
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

  /**
   * Every shard was found stored (or rewritten): the block is whole. With a claim, only while the
   * claim is current (a repair taken over says nothing).
   */
  async markVerified(hash: Buffer, claim?: RepairClaim): Promise<void> {
    await this.whileClaimed(hash, claim, "b.verified_at = CURRENT_TIMESTAMP(3), b.lost_at = NULL");
  }

  /** More than m shards are proven gone: sweeps stop re-queueing the block (while the claim is current). */
  async markLost(claim: RepairClaim): Promise<void> {
    await this.whileClaimed(claim.hash, claim, "b.lost_at = COALESCE(b.lost_at, CURRENT_TIMESTAMP(3))");
  }

  /** An upload made a lost block readable again, if not yet whole: sweeps queue the rest (while the claim is current). */
  async clearLost(claim: RepairClaim): Promise<void> {
    await this.whileClaimed(claim.hash, claim, "b.lost_at = NULL");
  }

  private async whileClaimed(hash: Buffer, claim: RepairClaim | undefined, set: string): Promise<void> {
    if (!claim) {
      await this.shardOf(hash).query(`UPDATE blocks b SET ${set} WHERE b.hash = ?`, [hash]);
      return;
    }
    await this.shardOf(hash).query(
      `UPDATE blocks b JOIN repair_queue q ON q.hash = b.hash SET ${set} WHERE b.hash = ? AND q.claim_generation = ?`, [hash, claim.generation],
    );
  }

  /**
   * Reserves the live blocks among `hashes` for a commit: they cannot be collected before the lease
   * ends. Row locks order this against the collector marking a block 'deleting'.
   */
  async reserve(hashes: Buffer[], leaseSeconds: number): Promise<boolean[]> {
    const present = new Array<boolean>(hashes.length).fill(false);
    await Promise.all([...this.byShard(hashes)].map(async ([pool, indexes]) => {
      const wanted = indexes.map((i) => hashes[i]);
      // One round trip, no transaction: each statement is atomic on its own. The lease is only
      // extended when less than half of it is left, so a block many commits share (a hot row) is
      // rarely written. Present means live and protected: collection skips blocks whose lease has
      // not run out. A block recorded lost is absent too: a commit must not reference bytes that
      // are gone (the uploader sends them again, which heals the block).
      const [results] = await pool.query<RowDataPacket[][]>(
        `UPDATE blocks SET reserved_until = NOW(3) + INTERVAL ? SECOND
          WHERE hash IN (?) AND state = 'live' AND (reserved_until IS NULL OR reserved_until < NOW(3) + INTERVAL ? SECOND);
         SELECT hash FROM blocks WHERE hash IN (?) AND state = 'live' AND lost_at IS NULL AND reserved_until > NOW(3)`,
        [leaseSeconds, wanted, leaseSeconds / 2, wanted],
      );
      const set = new Set(results[1].map((r) => (r.hash as Buffer).toString("hex")));
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
      // The whole transaction in one round trip: per change, record it (INSERT IGNORE: a change
      // seen before inserts nothing), move the count only when it was new, and report both. SET
      // runs left to right: zero_since sees the new count.
      const statements = ["START TRANSACTION"];
      const params: unknown[] = [];
      for (const i of indexes) {
        statements.push(
          "INSERT IGNORE INTO reference_changes_applied (source, sequence) VALUES (?, ?)",
          "SET @fresh = ROW_COUNT()",
          "UPDATE blocks SET ref_count = ref_count + ?, zero_since = IF(ref_count <= 0, CURRENT_TIMESTAMP(3), NULL) WHERE hash = ? AND @fresh > 0",
          "SELECT @fresh AS fresh, ROW_COUNT() AS counted",
        );
        params.push(source, changes[i].sequence, changes[i].delta, changes[i].hash);
      }
      statements.push("COMMIT");
      const conn = await pool.getConnection();
      try {
        const [results] = await conn.query<RowDataPacket[][]>(statements.join(";\n"), params);
        for (const [k, i] of indexes.entries()) {
          const row = results[1 + 4 * k + 3][0];
          if (Number(row.fresh) === 0) continue;
          if (Number(row.counted) === 0) unknown.push(changes[i].hash);
          applied++;
        }
      } catch (err) {
        // A statement failed part-way: the ones before it are undone with the rest.
        await conn.query("ROLLBACK").catch(() => undefined);
        throw err;
      } finally {
        conn.release();
      }
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

  /**
   * Blocks of one index shard that no version references, past their grace, not reserved, and at
   * zero since before `settledMs` (every source had delivered what it committed until then).
   */
  async collectable(shard: number, graceSeconds: number, settledMs: number, limit: number): Promise<Buffer[]> {
    const [rows] = await this.shards[shard].query<RowDataPacket[]>(
      `SELECT hash FROM blocks WHERE ${COLLECTABLE} AND ${SETTLED} LIMIT ?`, [graceSeconds, settledMs, limit],
    );
    return rows.map((r) => r.hash as Buffer);
  }

  /** Blocks of one index shard that would be collectable but for changes the relays have not yet delivered. */
  async awaitingRelay(shard: number, graceSeconds: number, settledMs: number): Promise<number> {
    const [rows] = await this.shards[shard].query<RowDataPacket[]>(
      `SELECT COUNT(*) AS n FROM blocks WHERE ${COLLECTABLE} AND NOT (${SETTLED})`, [graceSeconds, settledMs],
    );
    return Number(rows[0].n);
  }

  /** Blocks left in 'deleting' (a collector that stopped half-way), to finish. */
  async deleting(shard: number, limit: number): Promise<Buffer[]> {
    const [rows] = await this.shards[shard].query<RowDataPacket[]>("SELECT hash FROM blocks WHERE state = 'deleting' LIMIT ?", [limit]);
    return rows.map((r) => r.hash as Buffer);
  }

  /** Marks a block 'deleting' if, under its row lock, it is still collectable. */
  async beginDelete(hash: Buffer, graceSeconds: number, settledMs: number): Promise<boolean> {
    const [res] = await this.shardOf(hash).query<ResultSetHeader>(
      `UPDATE blocks SET state = 'deleting' WHERE hash = ? AND ${COLLECTABLE} AND ${SETTLED}`, [hash, graceSeconds, settledMs],
    );
    return res.affectedRows === 1;
  }

  /** Removes a deleted block's rows once its shards are gone. */
  async finishDelete(hash: Buffer): Promise<void> {
    const packed = await inTransaction(this.shardOf(hash), async (conn) => {
      const [rows] = await conn.query<RowDataPacket[]>("SELECT size, volume_id FROM blocks WHERE hash = ? AND state = 'deleting' FOR UPDATE", [hash]);
      if (rows.length === 0) return undefined;
      await conn.query("DELETE FROM blocks WHERE hash = ?", [hash]);
      await conn.query("DELETE FROM block_shards WHERE hash = ?", [hash]);
      await conn.query("DELETE FROM repair_queue WHERE hash = ?", [hash]);
      await conn.query("DELETE FROM block_uploads WHERE hash = ?", [hash]);
      return rows[0].volume_id === null ? undefined : { volumeId: Number(rows[0].volume_id), size: Number(rows[0].size) };
    });
    // A packed block's record is now dead bytes of its volume (compaction reclaims them). After the
    // row is gone, in another database: a crash between leaves the volume counted fuller, never emptier.
    if (packed) await this.volumes.recordDead(packed.volumeId, packed.size);
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

