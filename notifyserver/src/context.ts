import { createLogger, ServiceMetrics, userRateLimits, type Logger, type RateLimiter } from "@satchel/proto";
import type { SubscribeResponse } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import type { NotifyserverConfig } from "./config.js";
import { advancedMessage } from "./fanout/advanced-message.js";
import { Fanout } from "./fanout/fanout.js";
import { RedisFeed } from "./fanout/redis-feed.js";
import { ConnectionLimits } from "./limits.js";
import { NotifyMetrics } from "./metrics.js";
import { MountDirectory } from "./store/mounts.js";

export interface NotifyserverContext {
  config: NotifyserverConfig;
  logger: Logger;
  metrics: ServiceMetrics;
  notifyMetrics: NotifyMetrics;
  fanout: Fanout<SubscribeResponse>;
  limits: ConnectionLimits;
  /** Users' rate limits on Poll and Subscribe calls. */
  rateLimits: RateLimiter;
  mounts: MountDirectory;
  /** Latest cursors Redis knows (undefined where it does not, or when it is down). */
  latestCursors(namespaceIds: bigint[]): Promise<(bigint | undefined)[]>;
  close(): Promise<void>;
}

/** Constructs and wires the notifyserver's parts; each does its own work in its own room. */
export async function createContext(config: NotifyserverConfig): Promise<NotifyserverContext> {
  const logger = createLogger("notifyserver", config.logLevel);
  const metrics = new ServiceMetrics("notifyserver");
  const notifyMetrics = new NotifyMetrics(metrics.registry);
  const fanout = new Fanout(advancedMessage);
  const feed = new RedisFeed(config.redisUrl, fanout, notifyMetrics, logger, config.tls);
  const mounts = new MountDirectory(config.directoryUrl, config.tls);
  return {
    config, logger, metrics, notifyMetrics, fanout, mounts,
    limits: new ConnectionLimits(config.maxStreamsPerUser, config.maxStreams),
    rateLimits: userRateLimits(config.rateLimits, metrics),
    latestCursors: (ids) => feed.latestCursors(ids),
    close: async () => {
      feed.close();
      await mounts.close();
    },
  };
}
