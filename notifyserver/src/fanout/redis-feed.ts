import { Redis } from "ioredis";
import {
  latestCursorKey, MEMBERSHIP_CHANNEL, NAMESPACE_CHANNEL, redisTls, type Logger, type MembershipEnded, type NamespaceAdvance, type TlsConfig,
} from "@satchel/proto";
import type { NotifyMetrics } from "../metrics.js";
import type { Fanout } from "./fanout.js";

/**
 * The fan-out's feed: every metaserver publishes "namespace advanced" on one Redis channel, and
 * each message reaches every subscriber of the namespace here; an ended membership (another
 * channel) takes that namespace from the user's subscribers at once. Also reads the latest cursors
 * Redis keeps, which a new stream starts from.
 */
export class RedisFeed {
  private readonly subscriber: Redis;
  private readonly reader: Redis;
  /**
   * Advances read in this I/O turn, published together at its end. Over TLS, Redis's messages come
   * one record per callback, and streams would take each between two callbacks; published together,
   * a backlog (a stalled server catching up) folds into one advance per namespace, as it does when
   * one plaintext read brings it all. One deferral per turn, not per stream.
   */
  private arrived: { namespaceId: bigint; cursor: bigint; at: number }[] = [];

  constructor(
    redisUrl: string, fanout: Fanout, metrics: Pick<NotifyMetrics, "received">, logger: Logger, tls: TlsConfig | undefined,
    onMembershipEnded: (userId: string, namespaceId: bigint) => void,
  ) {
    this.subscriber = new Redis(redisUrl, { ...redisTls(redisUrl, tls), maxRetriesPerRequest: null });
    this.subscriber.on("error", (err) => logger.warn({ err: err.message }, "redis unavailable; devices fall back to polling"));
    this.subscriber.on("message", (channel: string, raw: string) => {
      if (channel === MEMBERSHIP_CHANNEL) {
        const ended = parseMembershipEnded(raw);
        if (ended) onMembershipEnded(ended.userId, ended.namespaceId);
        return;
      }
      const msg = parseAdvance(raw);
      if (!msg) {
        logger.warn({ raw: raw.slice(0, 200) }, "ignoring malformed notification");
        return;
      }
      metrics.received.inc();
      this.arrived.push(msg);
      if (this.arrived.length === 1) setImmediate(() => this.publishArrived(fanout));
    });
    this.subscriber.subscribe(NAMESPACE_CHANNEL, MEMBERSHIP_CHANNEL).catch((err: Error) => logger.warn({ err: err.message }, "redis subscribe failed; retrying"));
    this.reader = new Redis(redisUrl, { ...redisTls(redisUrl, tls), maxRetriesPerRequest: 1, enableOfflineQueue: false });
    this.reader.on("error", () => undefined);
  }

  private publishArrived(fanout: Fanout): void {
    const batch = this.arrived;
    this.arrived = [];
    for (const m of batch) fanout.publish(m.namespaceId, m.cursor, m.at);
  }

  /** Latest cursors Redis knows (undefined where it does not, or when it is down). */
  async latestCursors(ids: bigint[]): Promise<(bigint | undefined)[]> {
    if (ids.length === 0) return [];
    try {
      return (await this.reader.mget(ids.map(latestCursorKey))).map((v) => (v === null ? undefined : BigInt(v)));
    } catch {
      return ids.map(() => undefined);
    }
  }

  close(): void {
    this.subscriber.disconnect();
    this.reader.disconnect();
  }
}

/** One ended membership, or undefined when the message is not one. */
export function parseMembershipEnded(raw: string): { userId: string; namespaceId: bigint } | undefined {
  try {
    const msg = JSON.parse(raw) as MembershipEnded;
    if (!/^\d+$/.test(msg.userId)) return undefined;
    return { userId: msg.userId, namespaceId: BigInt(msg.namespaceId) };
  } catch {
    return undefined;
  }
}

/** One message of the channel, or undefined when it is not one. */
export function parseAdvance(raw: string): { namespaceId: bigint; cursor: bigint; at: number } | undefined {
  try {
    const msg = JSON.parse(raw) as NamespaceAdvance;
    return { namespaceId: BigInt(msg.namespaceId), cursor: BigInt(msg.cursor), at: msg.at ?? 0 };
  } catch {
    return undefined;
  }
}
