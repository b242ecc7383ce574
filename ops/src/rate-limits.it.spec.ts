import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RETRY_AFTER_HEADER, SharedRateLimiter } from "@satchel/proto";
import { MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { SatchelClient } from "@satchel/client-sdk";
import { caOf, createAccount, MetaserverProcesses, signIn, type ServiceProcess } from "./index.js";

/**
 * Per-user rate limits (issue 14) on the real cluster: a metaserver of its own with a tight limit
 * on changes, beside the cluster's.
 */
const { endpoints, stateDir } = inject("cluster");
const extra = new MetaserverProcesses(endpoints, stateDir);
let limited: ServiceProcess;

beforeAll(async () => {
  limited = await extra.start("metaserver-rate-limited", 64, { SATCHEL_RATE_LIMITS: JSON.stringify({ commits: { perSecond: 5, burst: 5 } }) });
}, 60_000);
afterAll(() => extra.stopAll());

describe("per-user rate limits", () => {
  it("a stock client over the limit gets RESOURCE_EXHAUSTED with the wait; other users are not slowed; refusals are counted", async () => {
    const [alice, bob] = await Promise.all([createAccount(endpoints, "ratelimit"), createAccount(endpoints, "ratelimit")]);
    // connect-node's own transport: it does not wait and resend as Satchel's does.
    const stock = (token: string) => createClient(MetaService, createGrpcTransport({
      baseUrl: limited.url, nodeOptions: { ca: caOf(endpoints) }, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    }));
    const a = stock(await signIn(endpoints, alice));
    const outcomes = await Promise.all(Array.from({ length: 12 }, (_, i) => a.createFolder({ path: `/burst-${i}` }).then(() => undefined, (e) => ConnectError.from(e))));
    const refused = outcomes.filter((e) => e !== undefined);
    expect(outcomes.filter((e) => e === undefined).length).toBeGreaterThanOrEqual(5);
    expect(refused.length).toBeGreaterThanOrEqual(5);
    for (const e of refused) {
      expect(e!.code).toBe(Code.ResourceExhausted);
      expect(e!.rawMessage).toMatch(/rate limit: too many changes from this user; retry in \d+ ms/);
      expect(Number(e!.metadata.get(RETRY_AFTER_HEADER))).toBeGreaterThan(0);
    }
    // Reads are another class, and Bob has buckets of his own.
    await a.listFolder({ path: "/" });
    const b = stock(await signIn(endpoints, bob));
    await Promise.all(Array.from({ length: 5 }, (_, i) => b.createFolder({ path: `/b-${i}` })));
    const metrics = await (await fetch(limited.metricsUrl)).text();
    const counted = Number(/satchel_metaserver_rate_limited_total\{class="commits"\} (\d+)/.exec(metrics)?.[1]);
    expect(counted).toBeGreaterThanOrEqual(refused.length);
  });

  it("the SDK honours the wait: every upload of a burst lands, paced by the limit", async () => {
    const account = await createAccount(endpoints, "ratelimit-sdk");
    const sdk = new SatchelClient({ metaserverUrl: limited.url, blockserverUrl: endpoints.blockserver, credentials: { ...account, deviceName: "sdk" } });
    const dir = mkdtempSync(join(tmpdir(), "ratelimit-"));
    const burst = (from: number, n: number) => Promise.all(Array.from({ length: n }, async (_, k) => {
      const local = join(dir, `f${from + k}`);
      writeFileSync(local, randomBytes(2000));
      await sdk.upload(local, `/paced/f${from + k}.bin`);
    }));
    const started = Date.now();
    // The SDK sends the commits of a burst together (CommitBatch), counted change by change: 15
    // changes against a bucket of 5 leave the user some 10 in debt at 5 a second.
    await burst(0, 15);
    await burst(15, 5);
    // The second burst waits out the debt (RESOURCE_EXHAUSTED with the wait, then sent again).
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    const listed = await sdk.list("/paced");
    expect(listed.length).toBe(20);
  });

  it("a batch counts its changes: twenty changes in one CommitBatch leave the user waiting as twenty calls would", async () => {
    const account = await createAccount(endpoints, "ratelimit-batch");
    const token = await signIn(endpoints, account);
    const meta = createClient(MetaService, createGrpcTransport({
      baseUrl: limited.url, nodeOptions: { ca: caOf(endpoints) }, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    }));
    // Admitted while the bucket holds one (5 at most), then charged for the other 19: in debt.
    const { results } = await meta.commitBatch({ changes: Array.from({ length: 20 }, (_, i) => ({ change: { case: "createFolder", value: { path: `/batched-${i}` } } })) });
    expect(results.map((r) => r.code)).toEqual(Array(20).fill(0));
    const refused = ConnectError.from(await meta.createFolder({ path: "/one-more" }).catch((e: unknown) => e));
    expect(refused.code).toBe(Code.ResourceExhausted);
    // 5 a second, about 15 in debt: some 3 s before one change is allowed again.
    expect(Number(refused.metadata.get(RETRY_AFTER_HEADER))).toBeGreaterThan(2000);
  });
});

describe("limits shared through Redis", () => {
  const limits = { calls: { perSecond: 1, burst: 5 } };
  const shared = (redisUrl = endpoints.redisUrl, onFallback?: (local: boolean) => void) =>
    new SharedRateLimiter({ redisUrl, tls: { ca: caOf(endpoints) }, limits, prefix: `test:${randomBytes(4).toString("hex")}`, onFallback });

  it("two processes' limiters draw on one bucket per key; a charge puts it in debt", async () => {
    const prefix = `test:${randomBytes(4).toString("hex")}`;
    const [one, two] = [0, 1].map(() => new SharedRateLimiter({ redisUrl: endpoints.redisUrl, tls: { ca: caOf(endpoints) }, limits, prefix }));
    try {
      const waits: number[] = [];
      for (let i = 0; i < 10; i++) waits.push(await (i % 2 ? two : one).take("k", "calls", 1));
      expect(waits.filter((w) => w === 0).length).toBe(5);
      expect(waits.slice(5).every((w) => w > 0 && w <= 1000)).toBe(true);
      // Another key has its own bucket.
      expect(await two.take("other", "calls", 1)).toBe(0);
      await one.charge("other", "calls", 10);
      // 4 left, 10 charged: 6 in debt, 7 seconds from holding one again.
      const wait = await two.take("other", "calls", 1);
      expect(wait).toBeGreaterThan(6000);
      expect(wait).toBeLessThanOrEqual(7000);
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });

  it("while Redis does not answer, each process enforces the limits with buckets of its own, and says so", async () => {
    const switched: boolean[] = [];
    // A port nothing listens on.
    const alone = shared("rediss://127.0.0.1:1", (local) => switched.push(local));
    try {
      const waits: number[] = [];
      for (let i = 0; i < 7; i++) waits.push(await alone.take("k", "calls", 1));
      expect(waits.filter((w) => w === 0).length).toBe(5);
      expect(switched).toEqual([true]);
    } finally {
      await alone.close();
    }
  });
});
