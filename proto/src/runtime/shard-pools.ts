import mysql from "mysql2/promise";
import type { Pool, RowDataPacket } from "mysql2/promise";
import { mysqlTls, type TlsConfig } from "./tls.js";

export interface ShardPoolOptions {
  /** Connections per shard pool. */
  shardConnections: number;
  /** Connections of the directory pool (the shard pools' size unless given). */
  directoryConnections?: number;
  /** BIGINT columns as exact strings (the metaserver's ids and cursors) rather than numbers. */
  bigNumbers?: boolean;
  multipleStatements?: boolean;
  /** TLS to every MariaDB server, checked against this CA; absent: plaintext (local development only). */
  tls?: TlsConfig;
  /** The directory's table listing the shards: the metaserver's `shards` (the default) or the blockserver's `index_shards`. */
  mapTable?: "shards" | "index_shards";
}

/**
 * The position, among `shards` index shards in shard-id order, of the one holding a block: the
 * blockserver's rule (its first two bytes, so every block of a prefix lands together), shared with
 * the tools and tests that read the index straight from MariaDB.
 */
export function indexShardOf(hash: Uint8Array, shards: number): number {
  return ((hash[0] << 8) | hash[1]) % shards;
}

/** The connection settings every pool of a directory shares: its credentials and options. */
function common(directoryUrl: string, opts: ShardPoolOptions, connectionLimit: number) {
  const url = new URL(directoryUrl);
  return {
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    connectionLimit,
    enableKeepAlive: true,
    ...mysqlTls(opts.tls),
    ...(opts.bigNumbers ? { supportBigNumbers: true, bigNumberStrings: true } : {}),
    ...(opts.multipleStatements ? { multipleStatements: true } : {}),
  };
}

/** A pool on the directory database alone (users, mounts, the shard map). */
export function directoryPool(directoryUrl: string, opts: ShardPoolOptions): Pool {
  const url = new URL(directoryUrl);
  return mysql.createPool({
    ...common(directoryUrl, opts, opts.directoryConnections ?? opts.shardConnections),
    host: url.hostname, port: Number(url.port), database: url.pathname.slice(1),
  });
}

/**
 * A directory database and one connection pool per shard its map lists: the one place a service
 * reads a shard map (the metaserver's metadata shards in its directory's `shards`, the blockserver's
 * index shards in its own directory's `index_shards`). Shards keep the map's order, by shard id.
 */
export class ShardPools {
  private constructor(readonly directory: Pool, private readonly pools: Map<number, Pool>) {}

  static async open(directoryUrl: string, opts: ShardPoolOptions): Promise<ShardPools> {
    const directory = directoryPool(directoryUrl, opts);
    try {
      const [rows] = await directory.query<RowDataPacket[]>(`SELECT shard_id, host, port, database_name FROM ${opts.mapTable ?? "shards"} ORDER BY shard_id`);
      if (rows.length === 0) throw new Error("the shard map is empty: run the cluster's migrations first");
      const pools = new Map<number, Pool>();
      for (const r of rows) {
        pools.set(Number(r.shard_id), mysql.createPool({
          ...common(directoryUrl, opts, opts.shardConnections), host: String(r.host), port: Number(r.port), database: String(r.database_name),
        }));
      }
      return new ShardPools(directory, pools);
    } catch (err) {
      await directory.end();
      throw err;
    }
  }

  get shardIds(): number[] {
    return [...this.pools.keys()];
  }

  /** Every shard's pool, in shard-id order. */
  get shards(): Pool[] {
    return [...this.pools.values()];
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
