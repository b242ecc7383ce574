import { envInt, envString, serviceBasics, type Env, type ServiceBasics } from "@satchel/proto";

export interface MetaserverConfig extends ServiceBasics {
  directoryUrl: string;
  redisUrl: string;
  blockserverUrl: string;
  /** Connections per shard pool. */
  shardPoolSize: number;
  listPageSize: number;
}

export function loadConfig(env: Env = process.env): MetaserverConfig {
  const config: MetaserverConfig = {
    ...serviceBasics(env, "metaserver", 7300),
    directoryUrl: envString(env, "SATCHEL_DIRECTORY_URL", ""),
    redisUrl: envString(env, "SATCHEL_REDIS_URL", "redis://127.0.0.1:7330"),
    blockserverUrl: envString(env, "SATCHEL_BLOCKSERVER_URL", "http://127.0.0.1:7301"),
    shardPoolSize: envInt(env, "SATCHEL_SHARD_POOL_SIZE", 16),
    listPageSize: envInt(env, "SATCHEL_LIST_PAGE_SIZE", 1000),
  };
  if (!config.directoryUrl) throw new Error("SATCHEL_DIRECTORY_URL is required (the shard map database)");
  return config;
}
