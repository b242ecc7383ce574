import { envInt, envString, serviceBasics, type Env, type ServiceBasics } from "@satchel/proto";

export interface NotifyserverConfig extends ServiceBasics {
  redisUrl: string;
  heartbeatSeconds: number;
}

export function loadConfig(env: Env = process.env): NotifyserverConfig {
  const config: NotifyserverConfig = {
    ...serviceBasics(env, "notifyserver", 7302),
    redisUrl: envString(env, "SATCHEL_REDIS_URL", "redis://127.0.0.1:7330"),
    heartbeatSeconds: envInt(env, "SATCHEL_HEARTBEAT_SECONDS", 15),
  };
  return config;
}
