import { Redis } from "ioredis";
import {
  latestCursorKey, MEMBERSHIP_CHANNEL, NAMESPACE_CHANNEL, redisTls, type Logger, type MembershipEnded, type NamespaceAdvance, type TlsConfig,
} from "@satchel/proto";

/** Where metaservers tell each other that a namespace moved to another shard. */
export const SHARD_MAP_CHANNEL = "satchel:shard-map";

/**
 * Raise the latest-cursor key and publish; a cursor below the key (concurrent commits finish in
 * any order) is not published, since a later one was. The key's expiry bounds how stale it can
 * get when a publish is lost.
 */
const PUBLISH_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local cursor = tonumber(ARGV[1])
if cursor < current then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[4]))
return redis.call('PUBLISH', ARGV[2], ARGV[3])`;

/** How often publishes that failed (Redis down) are tried again. */
const REPUBLISH_MS = 1000;

/**
 * Publishes {namespace, cursor} after a commit, and reads latest cursors back. Notifications are
 * hints: a publish that fails is logged and dropped, never failing the commit, because devices
 * catch up from their cursor anyway.
 */
export class CommitPublisher {
  readonly redis: Redis;
  /** Latest cursors whose publish failed, sent again once Redis answers. */
  private readonly unpublished = new Map<bigint, bigint>();
  private readonly timer: NodeJS.Timeout;

  constructor(url: string, private readonly logger: Logger, private readonly cursorTtlSeconds: number, tls: TlsConfig | undefined) {
    this.redis = new Redis(url, { ...redisTls(url, tls), lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: false });
    this.redis.on("error", (err) => this.logger.warn({ err: err.message }, "redis unavailable; commits continue without push"));
    this.timer = setInterval(() => void this.republish(), REPUBLISH_MS);
    this.timer.unref();
  }

  async published(namespaceId: bigint, cursor: bigint): Promise<void> {
    try {
      await this.send(namespaceId, cursor);
    } catch (err) {
      const pending = this.unpublished.get(namespaceId);
      if (pending === undefined || pending < cursor) this.unpublished.set(namespaceId, cursor);
      this.logger.warn({ namespaceId: namespaceId.toString(), err: (err as Error).message }, "publish failed; will retry");
    }
  }

  private async send(namespaceId: bigint, cursor: bigint): Promise<void> {
    // "at" lets notifyservers measure fan-out latency from here to the device's stream.
    const advance: NamespaceAdvance = { namespaceId: namespaceId.toString(), cursor: cursor.toString(), at: Date.now() };
    const message = JSON.stringify(advance);
    await this.redis.eval(PUBLISH_SCRIPT, 1, latestCursorKey(namespaceId), cursor.toString(), NAMESPACE_CHANNEL, message, this.cursorTtlSeconds);
  }

  private async republish(): Promise<void> {
    for (const [ns, cursor] of [...this.unpublished]) {
      try {
        await this.send(ns, cursor);
        if (this.unpublished.get(ns) === cursor) this.unpublished.delete(ns);
      } catch {
        return;
      }
    }
  }

  get unpublishedCount(): number {
    return this.unpublished.size;
  }

  /** Tells every notifyserver that a user's membership of a namespace ended (a hint: lost when Redis is down). */
  async membershipEnded(userId: bigint, namespaceId: bigint): Promise<void> {
    const ended: MembershipEnded = { userId: userId.toString(), namespaceId: namespaceId.toString() };
    await this.redis.publish(MEMBERSHIP_CHANNEL, JSON.stringify(ended)).catch((err: Error) =>
      this.logger.warn({ err: err.message }, "membership-ended publish failed; notifyservers find out at their next recheck"));
  }

  /** Tells every metaserver that a namespace now lives on another shard. */
  async shardMoved(namespaceId: bigint): Promise<void> {
    await this.redis.publish(SHARD_MAP_CHANNEL, namespaceId.toString()).catch(() => undefined);
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
    clearInterval(this.timer);
    this.redis.disconnect();
  }
}
