import { Redis } from "ioredis";
import { RateLimiter, refusal, METHOD_CLASSES, type RateLimit } from "./rate-limits.js";
import type { Logger } from "./logger.js";
import { redisTls, type TlsConfig } from "./tls.js";

/**
 * The token bucket of rate-limits.ts, kept in Redis so every process of a service (and every
 * service) draws on one bucket per key: N metaservers allow the rate once, not N times. One script
 * call per check, on Redis's clock (processes' clocks may differ). The state of a bucket is a hash
 * {u: units, at: ms} that expires once it would have refilled (a full bucket is the same as none).
 *
 * ARGV: perSecond, burst, cost, need (a check takes `cost` when the bucket holds `need`; a charge
 * passes need 0 and always takes, so the bucket may go into debt). Returns the wait in ms (0: taken).
 */
const TAKE = `
local perSecond, burst, cost, need = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'u', 'at')
local units, at = tonumber(b[1]), tonumber(b[2])
if units == nil or at == nil then units, at = burst, now end
units = math.min(burst, units + math.max(0, now - at) / 1000 * perSecond)
local wait = 0
if need == 0 or units >= need then
  units = units - cost
else
  wait = math.ceil((need - units) / perSecond * 1000)
end
redis.call('HSET', KEYS[1], 'u', tostring(units), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - units) / perSecond * 1000) + 1000)
return wait
`;

/** How long a check waits for Redis before the process's own buckets decide instead. */
const REDIS_TIMEOUT_MS = 250;
/** How long the first checks of a starting process wait for its first connection to Redis. */
const STARTUP_WAIT_MS = 1000;

export interface SharedLimiterOptions<C extends string> {
  redisUrl: string;
  tls?: Pick<TlsConfig, "ca">;
  limits: Record<C, RateLimit>;
  /** Keys are "<prefix>:<class>:<key>" in Redis. */
  prefix?: string;
  logger?: Logger;
  onRefused?: (cls: C) => void;
  /** Called with true when checks fall back to the process's own buckets (Redis unreachable), false when Redis answers again. */
  onFallback?: (local: boolean) => void;
}

/**
 * Rate limits shared across processes through Redis. While Redis cannot be reached (or takes longer
 * than REDIS_TIMEOUT_MS), each process enforces the same limits with buckets of its own (so N
 * processes allow up to N times the rate until Redis is back): sign-in and every other call go on,
 * which a platform that refused everything while its cache was down would not.
 */
export class SharedRateLimiter<C extends string> {
  private readonly redis: Redis;
  private readonly local: RateLimiter<C>;
  private readonly prefix: string;
  private usingLocal = false;
  /** Settled once Redis is first ready, or STARTUP_WAIT_MS after this started: checks before then wait for it. */
  private readonly startup: Promise<void>;

  constructor(private readonly opts: SharedLimiterOptions<C>) {
    this.prefix = opts.prefix ?? "satchel:rate";
    this.local = new RateLimiter<C>(opts.limits);
    this.redis = new Redis(opts.redisUrl, {
      ...redisTls(opts.redisUrl, opts.tls),
      lazyConnect: false, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: REDIS_TIMEOUT_MS,
    });
    // Reconnects by itself; a failed check falls back meanwhile (below).
    this.redis.on("error", () => undefined);
    this.startup = new Promise<void>((resolve) => {
      this.redis.once("ready", () => resolve());
      setTimeout(resolve, STARTUP_WAIT_MS).unref();
    });
    this.redis.defineCommand("satchelTake", { numberOfKeys: 1, lua: TAKE });
  }

  /** Admits one call of `method` by `userId`, or throws RESOURCE_EXHAUSTED saying how long to wait. */
  async admit(userId: string, method: string): Promise<void> {
    const cls = METHOD_CLASSES.get(method) as C | undefined;
    if (!cls || !(cls in this.opts.limits)) return;
    await this.check(userId, cls, cls === "blocks" ? 0 : 1, "from this user");
  }

  /**
   * Takes `cost` units of `key`'s bucket when it holds max(cost, 1), or throws RESOURCE_EXHAUSTED
   * (with the wait in its retry-after-ms trailer) saying whose ("from your address", "for this account").
   */
  async check(key: string, cls: C, cost: number, whose: string): Promise<void> {
    const wait = await this.take(key, cls, cost);
    if (wait > 0) {
      this.opts.onRefused?.(cls);
      throw refusal(cls, wait, whose);
    }
  }

  /** The milliseconds until `key`'s bucket holds max(cost, 1) units, or 0 after taking `cost` of them. */
  take(key: string, cls: C, cost: number): Promise<number> {
    return this.run(key, cls, cost, Math.max(cost, 1), () => this.local.take(key, cls, cost));
  }

  /** Takes units already spent (block bytes moved, a failed sign-in): the bucket may go into debt. */
  async charge(key: string, cls: C, units: number): Promise<void> {
    if (units <= 0) return;
    await this.run(key, cls, units, 0, () => (this.local.charge(key, cls, units), 0));
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private async run(key: string, cls: C, cost: number, need: number, fallback: () => number): Promise<number> {
    const { perSecond, burst } = this.opts.limits[cls];
    await this.startup;
    try {
      const wait = Number(await (this.redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)
        .satchelTake(`${this.prefix}:${cls}:${key}`, perSecond, burst, cost, need));
      if (this.usingLocal) this.switchTo(false);
      return wait;
    } catch (err) {
      if (!this.usingLocal) {
        this.opts.logger?.warn({ err: (err as Error).message }, "rate limits: Redis does not answer; this process enforces them alone until it does");
        this.switchTo(true);
      }
      return fallback();
    }
  }

  private switchTo(local: boolean): void {
    this.usingLocal = local;
    this.opts.onFallback?.(local);
  }
}
