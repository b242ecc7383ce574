import { createLogger, ServiceMetrics, userRateLimits, type Logger, type RateClass, type SharedRateLimiter } from "@satchel/proto";
import type { SubscribeResponse } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import type { NotifyserverConfig } from "./config.js";
import { advancedMessage } from "./fanout/advanced-message.js";
import { Fanout } from "./fanout/fanout.js";
import { RedisFeed } from "./fanout/redis-feed.js";
import { ConnectionLimits } from "./limits.js";
import { NotifyMetrics } from "./metrics.js";
import { Memberships } from "./store/mounts.js";

export interface NotifyserverContext {
  config: NotifyserverConfig;
  logger: Logger;
  metrics: ServiceMetrics;
  notifyMetrics: NotifyMetrics;
  fanout: Fanout<SubscribeResponse>;
  limits: ConnectionLimits;
  /** Users' rate limits on Poll and Subscribe calls. */
  rateLimits: SharedRateLimiter<RateClass>;
  /** Which namespaces each user may watch, from the metaserver. */
  mounts: Memberships;
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
  const mounts = new Memberships(config.metaserverUrl, config.serviceToken, config.tls);
  // An ended membership, announced by the metaserver: the user's streams stop hearing of it now.
  const ended = (userId: string, namespaceId: bigint) => {
    mounts.forget(userId);
    const streams = fanout.revoke(userId, namespaceId);
    if (streams > 0) logger.info({ userId, namespaceId: namespaceId.toString(), streams }, "membership ended: streams no longer watch the namespace");
  };
  const feed = new RedisFeed(config.redisUrl, fanout, notifyMetrics, logger, config.tls, ended);
  // Announcements are hints (lost while Redis is down): open streams are checked again now and then.
  const recheck = config.membershipRecheckSeconds > 0 ? setInterval(() => void recheckMemberships(fanout, mounts, ended).catch(
    (err: Error) => logger.warn({ err: err.message }, "membership recheck failed; trying again at the next"),
  ), config.membershipRecheckSeconds * 1000) : undefined;
  recheck?.unref();
  const rateLimits = userRateLimits(config, metrics, logger);
  return {
    config, logger, metrics, notifyMetrics, fanout, mounts,
    limits: new ConnectionLimits(config.maxStreamsPerUser, config.maxStreams),
    rateLimits,
    latestCursors: (ids) => feed.latestCursors(ids),
    close: async () => {
      clearInterval(recheck);
      feed.close();
      await rateLimits.close();
    },
  };
}

/** Takes from every open stream the namespaces its user may no longer watch. */
export async function recheckMemberships(
  fanout: Pick<Fanout<unknown>, "owners" | "watchedBy">, mounts: Pick<Memberships, "current">, ended: (userId: string, namespaceId: bigint) => void,
): Promise<void> {
  const users = fanout.owners().filter((o) => /^\d+$/.test(o));
  if (users.length === 0) return;
  const now = await mounts.current(users);
  for (const user of users) {
    const may = now.get(user) ?? new Set<bigint>();
    for (const ns of fanout.watchedBy(user)) if (!may.has(ns)) ended(user, ns);
  }
}
