import { Redis } from "ioredis";
import type { Logger } from "@satchel/proto";

/** The Redis channel every metaserver publishes namespace advances on, and notifyservers listen to. */
export const NAMESPACE_CHANNEL = "satchel:namespace-advanced";
export const latestCursorKey = (namespaceId: bigint) => `satchel:cursor:${namespaceId}`;

/** Raise the latest-cursor key (never lower it: publishes can arrive out of order) and publish. */
const PUBLISH_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('PUBLISH', ARGV[2], ARGV[3])`;

/**
 * Publishes {namespace, cursor} after a commit, and reads latest cursors back. Notifications are
 * hints: a publish that fails is logged and dropped, never failing the commit, because devices
 * catch up from their cursor anyway.
 */
export class CommitPublisher {
  readonly redis: Redis;

  constructor(url: string, private readonly logger: Logger) {
    this.redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: false });
    this.redis.on("error", (err) => this.logger.warn({ err: err.message }, "redis unavailable; commits continue without push"));
  }

  async published(namespaceId: bigint, cursor: bigint): Promise<void> {
    try {
      const message = JSON.stringify({ namespaceId: namespaceId.toString(), cursor: cursor.toString() });
      await this.redis.eval(PUBLISH_SCRIPT, 1, latestCursorKey(namespaceId), cursor.toString(), NAMESPACE_CHANNEL, message);
    } catch (err) {
      this.logger.warn({ namespaceId: namespaceId.toString(), err: (err as Error).message }, "publish failed");
    }
  }

  /** Latest cursors Redis knows; undefined for namespaces it does not (or when it is down). */
  async latest(namespaceIds: bigint[]): Promise<(bigint | undefined)[]> {
    if (namespaceIds.length === 0) return [];
    try {
      const values = await this.redis.mget(namespaceIds.map(latestCursorKey));
      return values.map((v) => (v === null ? undefined : BigInt(v)));
    } catch {
      return namespaceIds.map(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
