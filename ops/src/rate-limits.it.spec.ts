import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RETRY_AFTER_HEADER } from "@satchel/proto";
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
    const started = Date.now();
    await Promise.all(Array.from({ length: 15 }, async (_, i) => {
      const local = join(dir, `f${i}`);
      writeFileSync(local, randomBytes(2000));
      await sdk.upload(local, `/paced/f${i}.bin`);
    }));
    // 5 at once, then 5 a second: the last of 15 commits cannot land before ~2 s.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    const listed = await sdk.list("/paced");
    expect(listed.length).toBe(15);
  });
});
