import { Redis } from "ioredis";
import { createLogger, latestCursorKey, NAMESPACE_CHANNEL, ServiceMetrics, type Logger, type NamespaceAdvance } from "@satchel/proto";
import type { NotifyserverConfig } from "./config.js";
import { Fanout } from "./fanout/fanout.js";
import { ConnectionLimits } from "./limits.js";
import { NotifyMetrics } from "./metrics.js";
import { MountDirectory } from "./store/mounts.js";


export interface NotifyserverContext {
  config: NotifyserverConfig;
  logger: Logger;
  metrics: ServiceMetrics;
  notifyMetrics: NotifyMetrics;
  fanout: Fanout;
  limits: ConnectionLimits;
  mounts: MountDirectory;
  /** Latest cursors Redis knows (undefined where it does not, or when it is down). */
  latestCursors(namespaceIds: bigint[]): Promise<(bigint | undefined)[]>;
  close(): Promise<void>;
}

export async function createContext(config: NotifyserverConfig): Promise<NotifyserverContext> {
  const logger = createLogger("notifyserver", config.logLevel);
  const metrics = new ServiceMetrics("notifyserver");
  const notifyMetrics = new NotifyMetrics(metrics.registry);
  const fanout = new Fanout();
  const subscriber = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  subscriber.on("error", (err) => logger.warn({ err: err.message }, "redis unavailable; devices fall back to polling"));
  subscriber.on("message", (_channel: string, raw: string) => {
    try {
      const msg = JSON.parse(raw) as NamespaceAdvance;
      notifyMetrics.received.inc();
      fanout.publish(BigInt(msg.namespaceId), BigInt(msg.cursor), msg.at ?? 0);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, "ignoring malformed notification");
    }
  });
  subscriber.subscribe(NAMESPACE_CHANNEL).catch((err: Error) => logger.warn({ err: err.message }, "redis subscribe failed; retrying"));
  const reader = new Redis(config.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  reader.on("error", () => undefined);
  const mounts = new MountDirectory(config.directoryUrl);
  return {
    config, logger, metrics, notifyMetrics, fanout, mounts,
    limits: new ConnectionLimits(config.maxStreamsPerUser, config.maxStreams),
    latestCursors: async (ids) => {
      if (ids.length === 0) return [];
      try {
        return (await reader.mget(ids.map(latestCursorKey))).map((v) => (v === null ? undefined : BigInt(v)));
      } catch {
        return ids.map(() => undefined);
      }
    },
    close: async () => {
      subscriber.disconnect();
      reader.disconnect();
      await mounts.close();
    },
  };
}
