import mysql from "mysql2/promise";
import type { Pool, RowDataPacket } from "mysql2/promise";

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

export interface ShardPlacement {
  index: number;
  node: string;
  checksum: number;
  /** 'missing': the write could not store it, or scrub/read found it lost; repair rebuilds it. */
  state: "ok" | "missing";
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

  static async open(directoryUrl: string): Promise<BlockIndex> {
    const directory = mysql.createPool({ uri: directoryUrl, connectionLimit: 2 });
    const credentials = new URL(directoryUrl);
    try {
      const [rows] = await directory.query<RowDataPacket[]>("SELECT shard_id, host, port, database_name FROM shards ORDER BY shard_id");
      if (rows.length === 0) throw new Error("the shard map is empty: run the cluster's migrations first");
      const pools = rows.map((r) =>
        mysql.createPool({
          host: r.host as string,
          port: r.port as number,
          user: decodeURIComponent(credentials.username),
          password: decodeURIComponent(credentials.password),
          database: r.database_name as string,
          connectionLimit: 8,
          enableKeepAlive: true,
        }),
      );
      return new BlockIndex(pools, directory);
    } catch (err) {
      await directory.end();
      throw err;
    }
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
    const byShard = new Map<Pool, number[]>();
    hashes.forEach((h, i) => {
      const pool = this.shardOf(h);
      const list = byShard.get(pool) ?? [];
      list.push(i);
      byShard.set(pool, list);
    });
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
    const conn = await this.shardOf(hash).getConnection();
    try {
      await conn.beginTransaction();
      // An upsert, not delete-then-insert: deleting absent rows takes gap locks that deadlock
      // concurrent writes of neighbouring hashes.
      await conn.query(
        `INSERT INTO block_shards (hash, shard_index, node, checksum, state) VALUES ?
         ON DUPLICATE KEY UPDATE node = VALUES(node), checksum = VALUES(checksum), state = VALUES(state)`,
        [shards.map((s) => [hash, s.index, s.node, s.checksum, s.state])],
      );
      await conn.query("UPDATE blocks SET state = 'live', verified_at = CURRENT_TIMESTAMP(3) WHERE hash = ?", [hash]);
      await conn.commit();
    } catch (err) {
      await conn.rollback().catch(() => undefined);
      throw err;
    } finally {
      conn.release();
    }
  }

  /** Records a shard's new home and state (after a repair, or when a read or scrub finds it lost). */
  async setShard(hash: Buffer, shard: ShardPlacement): Promise<void> {
    await this.shardOf(hash).query(
      "UPDATE block_shards SET node = ?, checksum = ?, state = ? WHERE hash = ? AND shard_index = ?",
      [shard.node, shard.checksum, shard.state, hash, shard.index],
    );
  }

  /** Live blocks that have a shard recorded as missing, from every index shard. */
  async blocksWithMissingShards(limit: number): Promise<Buffer[]> {
    const found = await Promise.all(this.shards.map(async (pool) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        `SELECT DISTINCT s.hash FROM block_shards s JOIN blocks b ON b.hash = s.hash
         WHERE s.state = 'missing' AND b.state = 'live' LIMIT ?`, [limit],
      );
      return rows.map((r) => r.hash as Buffer);
    }));
    return found.flat().slice(0, limit);
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

  get shardCount(): number {
    return this.shards.length;
  }

  async markVerified(hash: Buffer): Promise<void> {
    await this.shardOf(hash).query("UPDATE blocks SET verified_at = CURRENT_TIMESTAMP(3) WHERE hash = ?", [hash]);
  }

  async close(): Promise<void> {
    await Promise.all([...this.shards, this.directory].map((p) => p.end()));
  }
}
