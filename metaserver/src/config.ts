import { envInt, envString, type Env } from "@satchel/proto";

export interface MetaserverConfig {
  host: string;
  port: number;
  metricsPort: number;
  logLevel: string;
  devToken: string;
  directoryUrl: string;
  redisUrl: string;
  blockserverUrl: string;
  /** Connections per shard pool. */
  shardPoolSize: number;
  listPageSize: number;
}

export function loadConfig(env: Env = process.env): MetaserverConfig {
  const config: MetaserverConfig = {
    host: envString(env, "SATCHEL_HOST", "127.0.0.1"),
    port: envInt(env, "SATCHEL_METASERVER_PORT", 7300),
    metricsPort: envInt(env, "SATCHEL_METASERVER_METRICS_PORT", 7310),
    logLevel: envString(env, "SATCHEL_LOG_LEVEL", "info"),
    devToken: envString(env, "SATCHEL_DEV_TOKEN", ""),
    directoryUrl: envString(env, "SATCHEL_DIRECTORY_URL", ""),
    redisUrl: envString(env, "SATCHEL_REDIS_URL", "redis://127.0.0.1:7330"),
    blockserverUrl: envString(env, "SATCHEL_BLOCKSERVER_URL", "http://127.0.0.1:7301"),
    shardPoolSize: envInt(env, "SATCHEL_SHARD_POOL_SIZE", 16),
    listPageSize: envInt(env, "SATCHEL_LIST_PAGE_SIZE", 1000),
  };
  if (!config.directoryUrl) throw new Error("SATCHEL_DIRECTORY_URL is required (the shard map database)");
  if (!config.devToken) throw new Error("SATCHEL_DEV_TOKEN is required");
  return config;
}
