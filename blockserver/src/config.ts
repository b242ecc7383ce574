import { envInt, envJson, envString, type Env } from "@satchel/proto";

export interface StorageNodeConfig {
  name: string;
  endpoint: string;
  accessKey: string;
  secretKey: string;
  bucket: string;
}

export interface BlockserverConfig {
  host: string;
  port: number;
  metricsPort: number;
  logLevel: string;
  devToken: string;
  /** mysql://user:password@host:port/satchel_directory: where the shard map lives. */
  directoryUrl: string;
  storageNodes: StorageNodeConfig[];
  dataShards: number;
  parityShards: number;
  /** Time one storage node may take on one shard before the request fails over. */
  nodeTimeoutMs: number;
}

export function loadConfig(env: Env = process.env): BlockserverConfig {
  const config: BlockserverConfig = {
    host: envString(env, "SATCHEL_HOST", "127.0.0.1"),
    port: envInt(env, "SATCHEL_BLOCKSERVER_PORT", 7301),
    metricsPort: envInt(env, "SATCHEL_BLOCKSERVER_METRICS_PORT", 7311),
    logLevel: envString(env, "SATCHEL_LOG_LEVEL", "info"),
    devToken: envString(env, "SATCHEL_DEV_TOKEN", ""),
    directoryUrl: envString(env, "SATCHEL_DIRECTORY_URL", ""),
    storageNodes: envJson<StorageNodeConfig[]>(env, "SATCHEL_STORAGE_NODES", []),
    dataShards: envInt(env, "SATCHEL_EC_DATA_SHARDS", 4),
    parityShards: envInt(env, "SATCHEL_EC_PARITY_SHARDS", 2),
    nodeTimeoutMs: envInt(env, "SATCHEL_NODE_TIMEOUT_MS", 10_000),
  };
  if (!config.directoryUrl) throw new Error("SATCHEL_DIRECTORY_URL is required (the shard map database)");
  if (!config.devToken) throw new Error("SATCHEL_DEV_TOKEN is required");
  const width = config.dataShards + config.parityShards;
  if (config.storageNodes.length < width) {
    throw new Error(
      `erasure coding ${config.dataShards}+${config.parityShards} needs at least ${width} storage nodes, ` +
        `SATCHEL_STORAGE_NODES has ${config.storageNodes.length}`,
    );
  }
  return config;
}
