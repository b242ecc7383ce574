import { Redis } from "ioredis";
import { createLogger, ServiceMetrics, type Logger } from "@satchel/proto";
import type { NotifyserverConfig } from "./config.js";
import { Fanout } from "./fanout/fanout.js";

/** The channel metaservers publish {namespaceId, cursor} on after each commit. */
export const NAMESPACE_CHANNEL = "satchel:namespace-advanced";

export interface NotifyserverContext {
  config: NotifyserverConfig;
  logger: Logger;
  metrics: ServiceMetrics;
  fanout: Fanout;
  close(): Promise<void>;
}

export async function createContext(config: NotifyserverConfig): Promise<NotifyserverContext> {
  const logger = createLogger("notifyserver", config.logLevel);
  const fanout = new Fanout();
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis unavailable; devices fall back to polling"));
  redis.on("message", (_channel: string, raw: string) => {
    try {
      const msg = JSON.parse(raw) as { namespaceId: string; cursor: string };
      fanout.publish(BigInt(msg.namespaceId), BigInt(msg.cursor));
    } catch (err) {
      logger.warn({ err: (err as Error).message }, "ignoring malformed notification");
    }
  });
  await redis.subscribe(NAMESPACE_CHANNEL);
  return {
    config, logger, metrics: new ServiceMetrics("notifyserver"), fanout,
    close: async () => {
      redis.disconnect();
    },
  };
}
