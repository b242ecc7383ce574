import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { NotifyService } from "../gen/satchel/notify/v1/notify_pb.js";
import { createLogger } from "./logger.js";
import { ServiceMetrics } from "./metrics.js";
import { DEFAULT_RATE_LIMITS, RateLimiter, rateLimitsFrom, RETRY_AFTER_HEADER } from "./rate-limits.js";
import { startRpcServer, type RpcServer } from "./server.js";
import { createSatchelTransport } from "./transport.js";

const COMMIT = "satchel.meta.v1.MetaService/CommitFile";
const READ = "satchel.meta.v1.MetaService/ListFolder";
const limits = { ...DEFAULT_RATE_LIMITS, commits: { perSecond: 10, burst: 3 }, blocks: { perSecond: 1000, burst: 2000 } };

function refusal(fn: () => void): ConnectError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return ConnectError.from(err);
  }
}

describe("per-user rate limits", () => {
  it("admit a burst, then refuse with the wait until the next unit, per user and per class", () => {
    let now = 0;
    const refused: string[] = [];
    const limiter = new RateLimiter(limits, (cls) => refused.push(cls), () => now);
    for (let i = 0; i < 3; i++) limiter.admit("1", COMMIT);
    const err = refusal(() => limiter.admit("1", COMMIT));
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.metadata.get(RETRY_AFTER_HEADER)).toBe("100");
    expect(refused).toEqual(["commits"]);
    // Another user, and another class of the same user, are untouched.
    limiter.admit("2", COMMIT);
    limiter.admit("1", READ);
    // Methods without a class are not limited.
    for (let i = 0; i < 10; i++) limiter.admit("1", "satchel.meta.v1.AuthService/Refresh");
    now = 100;
    limiter.admit("1", COMMIT);
    expect(refusal(() => limiter.admit("1", COMMIT))?.code).toBe(Code.ResourceExhausted);
  });

  it("block bytes are charged after the fact: a bucket in debt refuses until it has refilled", () => {
    let now = 0;
    const limiter = new RateLimiter(limits, undefined, () => now);
    limiter.admit("1", "satchel.block.v1.BlockService/GetBlock");
    limiter.charge("1", "blocks", 3000); // 1000 units of debt
    const err = refusal(() => limiter.admit("1", "satchel.block.v1.BlockService/PutBlock"));
    expect(err?.metadata.get(RETRY_AFTER_HEADER)).toBe("1001");
    now = 1002;
    limiter.admit("1", "satchel.block.v1.BlockService/PutBlock");
  });

  it("configuration overrides some classes and refuses nonsense", () => {
    expect(rateLimitsFrom('{"commits": {"perSecond": 5}}').commits).toEqual({ perSecond: 5, burst: DEFAULT_RATE_LIMITS.commits.burst });
    expect(rateLimitsFrom(undefined)).toEqual(DEFAULT_RATE_LIMITS);
    expect(() => rateLimitsFrom('{"uploads": {}}')).toThrow(/unknown class/);
    expect(() => rateLimitsFrom('{"commits": {"perSecond": 0}}')).toThrow(/perSecond/);
  });
});

const servers: RpcServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close(100);
});

describe("rate limits in the call pipeline", () => {
  it("refuse a user's calls over the limit (counted in the metrics), not the service token's; the client transport waits and sends again", async () => {
    const metrics = new ServiceMetrics("ratetest");
    // Slow enough that a loaded machine (CI runs three suites at once) cannot blur the timings below.
    const tight = { ...DEFAULT_RATE_LIMITS, metadata: { perSecond: 4, burst: 2 } };
    let served = 0;
    const server = await startRpcServer({
      name: "ratetest", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger: createLogger("t", "silent"), metrics,
      auth: { servicePermissions: {}, verify: (t) => (t === "svc" ? { kind: "service", userId: "service", service: "operator" } : { kind: "user", userId: t }), limits: new RateLimiter(tight, (cls) => metrics.rateLimited.inc({ class: cls })) },
      routes: (router) => router.service(NotifyService, { poll: () => (served++, {}) }),
    });
    servers.push(server);
    const url = `http://127.0.0.1:${server.port}`;
    const user = createClient(NotifyService, createSatchelTransport({ baseUrl: url, token: "7" }));
    const started = Date.now();
    await Promise.all(Array.from({ length: 6 }, () => user.poll({})));
    // Two at once, then one every 250 ms: the last of six cannot finish before ~1 s.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(served).toBe(6);
    const refusals = (await metrics.registry.getSingleMetric("satchel_ratetest_rate_limited_total")!.get()).values;
    expect(refusals.find((v) => v.labels.class === "metadata")!.value).toBeGreaterThanOrEqual(4);
    // A deadline too short for the wait: the refusal reaches the caller. On a server whose wait is
    // ~4 s, so that a deadline well past a loaded machine's round trip is still shorter than it.
    const slow = await startRpcServer({
      name: "slowtest", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger: createLogger("t", "silent"),
      auth: { servicePermissions: {}, verify: (t) => ({ kind: "user", userId: t }), limits: new RateLimiter({ ...DEFAULT_RATE_LIMITS, metadata: { perSecond: 0.25, burst: 1 } }) },
      routes: (router) => router.service(NotifyService, { poll: () => ({}) }),
    });
    servers.push(slow);
    const slowUser = createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${slow.port}`, token: "7" }));
    await slowUser.poll({});
    const err = await slowUser.poll({}, { timeoutMs: 1500 }).then(() => undefined, (e) => ConnectError.from(e));
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.rawMessage).toMatch(/rate limit: too many metadata reads from this user; retry in \d+ ms/);
    // Another RESOURCE_EXHAUSTED (a quota) names no wait: it reaches the caller at once.
    const quota = await startRpcServer({
      name: "quotatest", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger: createLogger("t", "silent"),
      auth: { verify: () => ({ kind: "user", userId: "1" }), servicePermissions: {} },
      routes: (router) => router.service(NotifyService, { poll: () => { throw new ConnectError("over quota", Code.ResourceExhausted); } }),
    });
    servers.push(quota);
    const quotaStarted = Date.now();
    const final = await createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${quota.port}`, token: "1" })).poll({})
      .then(() => undefined, (e) => ConnectError.from(e));
    expect(final?.rawMessage).toBe("over quota");
    expect(Date.now() - quotaStarted).toBeLessThan(1000);
    const service = createClient(NotifyService, createSatchelTransport({ baseUrl: url, token: "svc" }));
    // Twenty calls at once: limited like a user's they would take ~4.5 s, far past the deadline.
    await Promise.all(Array.from({ length: 20 }, () => service.poll({}, { timeoutMs: 1500 })));
  });
});
