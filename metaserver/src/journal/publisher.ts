import { Redis } from "ioredis";
import type { Logger } from "@satchel/proto";

/** The Redis channel every metaserver publishes namespace advances on, and notifyservers listen to. */
export const NAMESPACE_CHANNEL = "satchel:namespace-advanced";
export const latestCursorKey = (namespaceId: bigint) => `satchel:cursor:${namespaceId}`;

/**
 * Publishes {namespace, cursor} after a commit. Notifications are hints: a publish that fails is
 * logged and dropped, never failing the commit, because devices catch up from their cursor anyway.
 */
export class CommitPublisher {
  private readonly redis: Redis;

  constructor(url: string, private readonly logger: Logger) {
    this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: false });
    this.redis.on("error", (err) => this.logger.warn({ err: err.message }, "redis unavailable; commits continue without push"));
  }

  async published(namespaceId: bigint, cursor: bigint): Promise<void> {
    try {
      await this.redis
        .multi()
        .set(latestCursorKey(namespaceId), cursor.toString())
        .publish(NAMESPACE_CHANNEL, JSON.stringify({ namespaceId: namespaceId.toString(), cursor: cursor.toString() }))
        .exec();
    } catch (err) {
      this.logger.warn({ namespaceId: namespaceId.toString(), err: (err as Error).message }, "publish failed");
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
