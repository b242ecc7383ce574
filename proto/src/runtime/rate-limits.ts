import { Code, ConnectError } from "@connectrpc/connect";
import type { ServiceMetrics } from "./metrics.js";

/**
 * Per-user rate limits: a token bucket per user and per class of method, so one user (a runaway
 * sync loop, a script) cannot take a service from everyone else. Service-token callers are exempt.
 *
 * Classes: "metadata" (reads of the tree, the journal, notifications), "commits" (every change
 * to the tree or to sharing) and "blocks" (block bytes moved, both ways). A call of a limited
 * method is admitted while its bucket holds at least one unit; "metadata" and "commits" calls take
 * one unit each; block calls take their bytes once known (the handler charges them), so a bucket
 * may go into debt and the user then waits until it refills. A refused call is RESOURCE_EXHAUSTED
 * with the wait in its `retry-after-ms` trailer; it did nothing, so it may simply be sent again
 * then (Satchel's client transport does).
 */
export type RateClass = "metadata" | "commits" | "blocks";

export interface RateLimit {
  /** Units per second refilled (calls, or bytes for "blocks"). */
  perSecond: number;
  /** Units the bucket holds at most: the burst allowed after a quiet spell. */
  burst: number;
}

export type RateLimitConfig = Record<RateClass, RateLimit>;

export const DEFAULT_RATE_LIMITS: RateLimitConfig = {
  metadata: { perSecond: 500, burst: 1000 },
  commits: { perSecond: 200, burst: 400 },
  blocks: { perSecond: 256 * 1024 * 1024, burst: 512 * 1024 * 1024 },
};

export const RETRY_AFTER_HEADER = "retry-after-ms";

const META = "satchel.meta.v1.MetaService/";
const BLOCK = "satchel.block.v1.BlockService/";
const NOTIFY = "satchel.notify.v1.NotifyService/";

/** The class of each limited method; methods not listed (sign-in, health, admin) are not limited here. */
export const METHOD_CLASSES: ReadonlyMap<string, RateClass> = new Map<string, RateClass>([
  ...["GetFileMetadata", "ListFolder", "ListRevisions", "ListNamespaces", "ListDelta", "WaitForChange", "ListMembers", "GetSpaceUsage"]
    .map((m): [string, RateClass] => [META + m, "metadata"]),
  ...["CommitFile", "CreateFolder", "Delete", "Undelete", "PermanentlyDelete", "Move", "Restore", "ShareFolder", "Unshare", "LeaveSharedFolder", "CreateShareLink", "RevokeShareLink"]
    .map((m): [string, RateClass] => [META + m, "commits"]),
  [BLOCK + "HasBlocks", "metadata"],
  [BLOCK + "PutBlock", "blocks"],
  [BLOCK + "GetBlock", "blocks"],
  [NOTIFY + "Poll", "metadata"],
  [NOTIFY + "Subscribe", "metadata"],
]);

interface Bucket {
  units: number;
  at: number;
}

/** How many buckets may exist before full (idle) ones are swept. */
const SWEEP_AT = 10_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limits: RateLimitConfig,
    private readonly onRefused?: (cls: RateClass) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Admits one call of `method` by `userId`, or throws RESOURCE_EXHAUSTED saying how long to wait. */
  admit(userId: string, method: string): void {
    const cls = METHOD_CLASSES.get(method);
    if (!cls) return;
    const wait = this.take(userId, cls, cls === "blocks" ? 0 : 1);
    if (wait > 0) {
      this.onRefused?.(cls);
      const err = new ConnectError(
        `rate limit: too many ${cls === "blocks" ? "block bytes" : cls === "commits" ? "changes" : "metadata reads"} from this user; retry in ${wait} ms`,
        Code.ResourceExhausted,
      );
      err.metadata.set(RETRY_AFTER_HEADER, String(wait));
      throw err;
    }
  }

  /** Takes block bytes moved by a call already admitted (the bucket may go into debt). */
  charge(userId: string, cls: RateClass, units: number): void {
    const b = this.bucket(userId, cls);
    b.units -= units;
  }

  /**
   * Takes `cost` units if the bucket holds at least max(cost, 1) — for bytes charged later, a
   * bucket out of debt — and returns 0; otherwise takes nothing and returns the milliseconds until
   * it would.
   */
  take(userId: string, cls: RateClass, cost: number): number {
    const b = this.bucket(userId, cls);
    const need = Math.max(cost, 1);
    if (b.units >= need) {
      b.units -= cost;
      return 0;
    }
    return Math.ceil(((need - b.units) / this.limits[cls].perSecond) * 1000);
  }

  private bucket(userId: string, cls: RateClass): Bucket {
    const key = `${cls}:${userId}`;
    const { perSecond, burst } = this.limits[cls];
    const now = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= SWEEP_AT) this.sweep(now);
      b = { units: burst, at: now };
      this.buckets.set(key, b);
      return b;
    }
    b.units = Math.min(burst, b.units + ((now - b.at) / 1000) * perSecond);
    b.at = now;
    return b;
  }

  /** Drops buckets that have refilled: a full bucket is the same as none. */
  private sweep(now: number): void {
    for (const [key, b] of this.buckets) {
      const { perSecond, burst } = this.limits[key.slice(0, key.indexOf(":")) as RateClass];
      if (b.units + ((now - b.at) / 1000) * perSecond >= burst) this.buckets.delete(key);
    }
  }
}

/** A service's limiter, counting refusals in its metrics. */
export function userRateLimits(limits: RateLimitConfig, metrics: ServiceMetrics): RateLimiter {
  return new RateLimiter(limits, (cls) => metrics.rateLimited.inc({ class: cls }));
}

/** Limits from SATCHEL_RATE_LIMITS (JSON, any classes to override, e.g. {"commits": {"perSecond": 20, "burst": 40}}). */
export function rateLimitsFrom(json: string | undefined): RateLimitConfig {
  if (!json) return DEFAULT_RATE_LIMITS;
  const given = JSON.parse(json) as Partial<Record<RateClass, Partial<RateLimit>>>;
  const out = { ...DEFAULT_RATE_LIMITS };
  for (const [cls, limit] of Object.entries(given) as [RateClass, Partial<RateLimit>][]) {
    if (!(cls in DEFAULT_RATE_LIMITS)) throw new Error(`SATCHEL_RATE_LIMITS: unknown class "${cls}" (metadata, commits, blocks)`);
    const merged = { ...DEFAULT_RATE_LIMITS[cls], ...limit };
    if (!(merged.perSecond > 0) || !(merged.burst >= 1)) throw new Error(`SATCHEL_RATE_LIMITS: ${cls} needs perSecond > 0 and burst >= 1`);
    out[cls] = merged;
  }
  return out;
}
