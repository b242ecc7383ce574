import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "./logger.js";
import type { ServiceMetrics } from "./metrics.js";
import { SharedRateLimiter } from "./shared-rate-limits.js";
import type { TlsConfig } from "./tls.js";

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
export type RateClass = "metadata" | "commits" | "blocks" | SignInClass;

/**
 * Limits keyed by something other than a signed-in user: "signin" (Login and Refresh per client
 * address), "signup" (CreateAccount per client address), "failedSignins" (wrong passwords per
 * username: checked before a Login, charged when it fails) and "links" (share-link gateway
 * requests per client address).
 */
export type SignInClass = "signin" | "signup" | "failedSignins" | "links";

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
  signin: { perSecond: 2, burst: 20 },
  signup: { perSecond: 0.1, burst: 10 },
  failedSignins: { perSecond: 0.1, burst: 10 },
  links: { perSecond: 20, burst: 100 },
};

/** What a class counts, for the message of a refusal. */
const COUNTED: Record<RateClass, string> = {
  metadata: "metadata reads", commits: "changes", blocks: "block bytes",
  signin: "sign-ins", signup: "new accounts", failedSignins: "failed sign-ins", links: "share-link requests",
};

/**
 * The RESOURCE_EXHAUSTED of a refused call: what was counted, whose ("from this user", "for this
 * account"), and the wait (also in its retry-after-ms trailer).
 */
export function refusal(cls: string, waitMs: number, whose: string): ConnectError {
  const err = new ConnectError(`rate limit: too many ${COUNTED[cls as RateClass] ?? cls} ${whose}; retry in ${waitMs} ms`, Code.ResourceExhausted);
  err.metadata.set(RETRY_AFTER_HEADER, String(waitMs));
  return err;
}

export const RETRY_AFTER_HEADER = "retry-after-ms";

const META = "satchel.meta.v1.MetaService/";
const BLOCK = "satchel.block.v1.BlockService/";
const NOTIFY = "satchel.notify.v1.NotifyService/";

/** The class of each limited method; methods not listed (sign-in, health, admin) are not limited here. */
export const METHOD_CLASSES: ReadonlyMap<string, RateClass> = new Map<string, RateClass>([
  ...["GetFileMetadata", "ListFolder", "ListRevisions", "ListNamespaces", "ListDelta", "WaitForChange", "ListMembers", "GetSpaceUsage", "ListShareLinks"]
    .map((m): [string, RateClass] => [META + m, "metadata"]),
  ...["CommitFile", "CommitBatch", "CreateFolder", "Delete", "Undelete", "PermanentlyDelete", "Move", "Restore", "ShareFolder", "Unshare", "LeaveSharedFolder", "CreateShareLink", "RevokeShareLink", "SetLinkPolicy"]
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

/**
 * Token buckets per key and class. The classes are the per-user ones above unless a limiter names
 * its own (the share-link gateway's, per client address).
 */
export class RateLimiter<C extends string = RateClass> {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limits: Record<C, RateLimit>,
    private readonly onRefused?: (cls: C) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Admits one call of `method` by `userId`, or throws RESOURCE_EXHAUSTED saying how long to wait. */
  admit(userId: string, method: string): void {
    const cls = METHOD_CLASSES.get(method) as C | undefined;
    if (!cls) return;
    const wait = this.take(userId, cls, cls === "blocks" ? 0 : 1);
    if (wait > 0) {
      this.onRefused?.(cls);
      throw refusal(cls, wait, "from this user");
    }
  }

  /** Takes block bytes moved by a call already admitted (the bucket may go into debt). */
  charge(userId: string, cls: C, units: number): void {
    const b = this.bucket(userId, cls);
    b.units -= units;
  }

  /**
   * Takes `cost` units if the bucket holds at least max(cost, 1) — for bytes charged later, a
   * bucket out of debt — and returns 0; otherwise takes nothing and returns the milliseconds until
   * it would.
   */
  take(userId: string, cls: C, cost: number): number {
    const b = this.bucket(userId, cls);
    const need = Math.max(cost, 1);
    if (b.units >= need) {
      b.units -= cost;
      return 0;
    }
    return Math.ceil(((need - b.units) / this.limits[cls].perSecond) * 1000);
  }

  private bucket(userId: string, cls: C): Bucket {
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
      const { perSecond, burst } = this.limits[key.slice(0, key.indexOf(":")) as C];
      if (b.units + ((now - b.at) / 1000) * perSecond >= burst) this.buckets.delete(key);
    }
  }
}

/** A service's limiter, shared through Redis with every other process, counting refusals and fallbacks in its metrics. */
export function userRateLimits(
  config: { rateLimits: RateLimitConfig; redisUrl: string; tls?: Pick<TlsConfig, "ca"> }, metrics: ServiceMetrics, logger?: Logger,
): SharedRateLimiter<RateClass> {
  return new SharedRateLimiter<RateClass>({
    redisUrl: config.redisUrl, tls: config.tls, limits: config.rateLimits, logger,
    onRefused: (cls) => metrics.rateLimited.inc({ class: cls }),
    onFallback: (local) => metrics.rateLimitsLocal.set(local ? 1 : 0),
  });
}

/** Limits from SATCHEL_RATE_LIMITS (JSON, any classes to override, e.g. {"commits": {"perSecond": 20, "burst": 40}}). */
export function rateLimitsFrom(json: string | undefined): RateLimitConfig {
  if (!json) return DEFAULT_RATE_LIMITS;
  const given = JSON.parse(json) as Partial<Record<RateClass, Partial<RateLimit>>>;
  const out = { ...DEFAULT_RATE_LIMITS };
  for (const [cls, limit] of Object.entries(given) as [RateClass, Partial<RateLimit>][]) {
    if (!(cls in DEFAULT_RATE_LIMITS)) throw new Error(`SATCHEL_RATE_LIMITS: unknown class "${cls}" (${Object.keys(DEFAULT_RATE_LIMITS).join(", ")})`);
    const merged = { ...DEFAULT_RATE_LIMITS[cls], ...limit };
    if (!(merged.perSecond > 0) || !(merged.burst >= 1)) throw new Error(`SATCHEL_RATE_LIMITS: ${cls} needs perSecond > 0 and burst >= 1`);
    out[cls] = merged;
  }
  return out;
}
