import { inTransaction, ShardPools, type TlsConfig } from "@satchel/proto";
import type { Pool, PoolConnection, RowDataPacket } from "mysql2/promise";

export type { Pool, PoolConnection, RowDataPacket };

/**
 * The directory database (users, the namespace -> shard map) and one connection pool per metadata
 * shard, as the directory's `shards` table lists them (the shared ShardPools, with the metaserver's
 * settings: ids and cursors as exact strings).
 */
export type ShardSet = ShardPools;

export function openShardSet(directoryUrl: string, poolSize: number, tls: TlsConfig | undefined): Promise<ShardSet> {
  return ShardPools.open(directoryUrl, { shardConnections: poolSize, bigNumbers: true, multipleStatements: true, tls });
}

export { inTransaction };
