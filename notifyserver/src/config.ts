import { envInt, envString, type Env } from "@satchel/proto";

export interface NotifyserverConfig {
  host: string;
  port: number;
  metricsPort: number;
  logLevel: string;
  devToken: string;
  redisUrl: string;
  heartbeatSeconds: number;
}

export function loadConfig(env: Env = process.env): NotifyserverConfig {
  const config: NotifyserverConfig = {
    host: envString(env, "SATCHEL_HOST", "127.0.0.1"),
    port: envInt(env, "SATCHEL_NOTIFYSERVER_PORT", 7302),
    metricsPort: envInt(env, "SATCHEL_NOTIFYSERVER_METRICS_PORT", 7312),
    logLevel: envString(env, "SATCHEL_LOG_LEVEL", "info"),
    devToken: envString(env, "SATCHEL_DEV_TOKEN", ""),
    redisUrl: envString(env, "SATCHEL_REDIS_URL", "redis://127.0.0.1:7330"),
    heartbeatSeconds: envInt(env, "SATCHEL_HEARTBEAT_SECONDS", 15),
  };
  if (!config.devToken) throw new Error("SATCHEL_DEV_TOKEN is required");
  return config;
}
