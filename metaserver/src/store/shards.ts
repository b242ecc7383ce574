import mysql from "mysql2/promise";
import { inTransaction } from "@satchel/proto";
import type { Pool, PoolConnection, RowDataPacket } from "mysql2/promise";

export type { Pool, PoolConnection, RowDataPacket };

/**
 * The directory database (users, the namespace -> shard map) and one connection pool per
 * metadata shard, as the directory's `shards` table lists them.
 */
export class ShardSet {
  private constructor(
    readonly directory: Pool,
    private readonly pools: Map<number, Pool>,
  ) {}

  static async open(directoryUrl: string, poolSize: number): Promise<ShardSet> {
    const url = new URL(directoryUrl);
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    const common = { user, password, connectionLimit: poolSize, enableKeepAlive: true, supportBigNumbers: true, bigNumberStrings: true, multipleStatements: true };
    const directory = mysql.createPool({ ...common, host: url.hostname, port: Number(url.port), database: url.pathname.slice(1) });
    const [rows] = await directory.query<RowDataPacket[]>("SELECT shard_id, host, port, database_name FROM shards ORDER BY shard_id");
    if (rows.length === 0) throw new Error("the shard map is empty: run the cluster's migrations first");
    const pools = new Map<number, Pool>();
    for (const r of rows) {
      pools.set(Number(r.shard_id), mysql.createPool({ ...common, host: r.host, port: Number(r.port), database: r.database_name }));
    }
    return new ShardSet(directory, pools);
  }

  get shardIds(): number[] {
    return [...this.pools.keys()];
  }

  shard(id: number): Pool {
    const pool = this.pools.get(id);
    if (!pool) throw new Error(`shard ${id} is not in the shard map`);
    return pool;
  }

  /** Connections of a pool in use and idle (mysql2 keeps these counts on its core pool). */
  poolUsage(id: number | "directory"): { inUse: number; idle: number } {
    const pool = (id === "directory" ? this.directory : this.shard(id)) as unknown as { pool: { _allConnections: { length: number }; _freeConnections: { length: number } } };
    const all = pool.pool._allConnections.length;
    const idle = pool.pool._freeConnections.length;
    return { inUse: all - idle, idle };
  }

  async close(): Promise<void> {
    await Promise.all([this.directory.end(), ...[...this.pools.values()].map((p) => p.end())]);
  }
}

export { inTransaction };
