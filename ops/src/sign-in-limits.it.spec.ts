import { createHash, randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RETRY_AFTER_HEADER } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { caOf, createAccount, MetaserverProcesses, ServiceProcesses, signIn, type ServiceProcess, type TestAccount } from "./index.js";

/**
 * Sign-in that a flood cannot exhaust (issue 21), on the real cluster: metaservers of their own
 * with the default limits (the cluster's are raised for its other tests), clients on other
 * loopback addresses (127.0.0.x) as other machines would be.
 */
const { endpoints, stateDir } = inject("cluster");
const metas = new MetaserverProcesses(endpoints, stateDir);
const blocks = new ServiceProcesses("blockserver", endpoints, stateDir);
const DEFAULTS = { SATCHEL_RATE_LIMITS: "{}" };
let first: ServiceProcess;
let second: ServiceProcess;
let narrow: ServiceProcess;

beforeAll(async () => {
  [first, second, narrow] = await Promise.all([
    metas.start("metaserver-signin-1", 100, DEFAULTS),
    metas.start("metaserver-signin-2", 103, DEFAULTS),
    // One hash at a time, two waiting: a full queue is easy to reach.
    metas.start("metaserver-signin-narrow", 106, { SATCHEL_PASSWORD_HASHES_AT_ONCE: "1", SATCHEL_PASSWORD_QUEUE: "2" }),
  ]);
}, 90_000);
afterAll(async () => {
  await metas.stopAll();
  await blocks.stopAll();
});

/** A stock gRPC client of AuthService from a loopback address of its own. */
const authFrom = (url: string, localAddress: string) =>
  createClient(AuthService, createGrpcTransport({ baseUrl: url, nodeOptions: { ca: caOf(endpoints), localAddress } }));

async function attempt(call: Promise<unknown>): Promise<ConnectError | undefined> {
  try {
    await call;
    return undefined;
  } catch (err) {
    return ConnectError.from(err);
  }
}

const guess = (username: string) => ({ username, password: randomBytes(8).toString("hex"), deviceName: "guesser" });

describe("sign-in limits", () => {
  it("a flood of wrong-password logins from one address is refused past its burst; a user elsewhere signs in meanwhile", async () => {
    const real = await createAccount(endpoints, "flood-victim");
    const flooder = authFrom(first.url, "127.0.0.2");
    const started = Date.now();
    const outcomes: (ConnectError | undefined)[] = [];
    const flood = Promise.all(Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 12; i++) outcomes.push(await attempt(flooder.login(guess(`nobody-${w}-${i}`))));
    }));
    const user = authFrom(first.url, "127.0.0.3");
    const signedIn = await user.login({ username: real.username, password: real.password, deviceName: "laptop" });
    await flood;
    const seconds = (Date.now() - started) / 1000;
    expect(signedIn.tokens?.accessToken).toBeTruthy();
    const guessed = outcomes.filter((e) => e?.code === Code.Unauthenticated).length;
    const refused = outcomes.filter((e) => e?.code === Code.ResourceExhausted);
    // Default "signin": a burst of 20, then 2 a second.
    expect(guessed).toBeLessThanOrEqual(20 + Math.ceil(2 * seconds) + 1);
    expect(guessed + refused.length).toBe(outcomes.length);
    // Eight at a time from one address also fill its share of the password queue (an eighth of it),
    // which refuses too, on a slow machine before the address's burst is spent; the rate limit must refuse some.
    for (const e of refused) expect(e.rawMessage).toMatch(/rate limit: too many sign-ins from your address; retry in \d+ ms|sign-in is busy: \d+ sign-ins are waiting; retry in \d+ ms/);
    const limited = refused.filter((e) => /rate limit: too many sign-ins from your address/.test(e.rawMessage));
    expect(limited.length).toBeGreaterThan(0);
    expect(Number(limited[0]!.metadata.get(RETRY_AFTER_HEADER))).toBeGreaterThan(0);
  });

  it("guessing one account from many addresses stops at the account's limit; other accounts sign in", async () => {
    const [target, bystander] = await Promise.all([createAccount(endpoints, "guessed"), createAccount(endpoints, "bystander")]);
    const codes: Code[] = [];
    for (let i = 0; i < 14; i++) {
      const e = await attempt(authFrom(first.url, `127.0.1.${i + 1}`).login(guess(target.username)));
      codes.push(e!.code);
    }
    // Default "failedSignins": 10, then one in ten seconds.
    expect(codes.slice(0, 10).every((c) => c === Code.Unauthenticated)).toBe(true);
    const refused = await attempt(authFrom(first.url, "127.0.1.30").login(guess(target.username)));
    expect(refused?.code).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toMatch(/too many failed sign-ins for this account/);
    // The cost of that limit: while it holds, even the right password waits.
    expect((await attempt(authFrom(first.url, "127.0.1.31").login({ username: target.username, password: target.password, deviceName: "d" })))?.code)
      .toBe(Code.ResourceExhausted);
    expect((await authFrom(first.url, "127.0.1.32").login({ username: bystander.username, password: bystander.password, deviceName: "d" })).tokens).toBeDefined();
  });

  it("the limits hold across metaservers: two processes allow one burst, not two", async () => {
    const clients = [authFrom(first.url, "127.0.2.1"), authFrom(second.url, "127.0.2.1")];
    const started = Date.now();
    const outcomes: (ConnectError | undefined)[] = [];
    // Ten at a time, each worker on one metaserver: apart, the two would let 40 through at once.
    await Promise.all(Array.from({ length: 10 }, async (_, w) => {
      for (let i = 0; i < 6; i++) outcomes.push(await attempt(clients[w % 2].login(guess(`nobody-shared-${w}-${i}`))));
    }));
    const seconds = (Date.now() - started) / 1000;
    const guessed = outcomes.filter((e) => e?.code === Code.Unauthenticated).length;
    expect(guessed).toBeLessThanOrEqual(20 + Math.ceil(2 * seconds) + 1);
    expect(outcomes.some((e) => e?.code === Code.ResourceExhausted && /too many sign-ins from your address/.test(e.rawMessage))).toBe(true);
  });

  it("new accounts are limited per address", async () => {
    const auth = authFrom(first.url, "127.0.3.1");
    const codes: (Code | "OK")[] = [];
    for (let i = 0; i < 13; i++) {
      const e = await attempt(auth.createAccount({ username: `signup-${randomBytes(4).toString("hex")}`, password: "correct horse battery" }));
      codes.push(e?.code ?? "OK");
    }
    // Default "signup": 10, then one in ten seconds.
    expect(codes.slice(0, 10)).toEqual(Array(10).fill("OK"));
    expect(codes.slice(11)).toContain(Code.ResourceExhausted);
  });

  it("password hashing waits in a bounded queue: past it, RESOURCE_EXHAUSTED with a wait, and the queue drains", async () => {
    const account = await createAccount(endpoints, "queued");
    // Raised address limits on this one (the cluster's), so only the queue refuses.
    const outcomes = await Promise.all(Array.from({ length: 12 }, (_, i) => attempt(authFrom(narrow.url, `127.0.4.${i + 1}`).login(guess(account.username)))));
    const busy = outcomes.filter((e) => e?.code === Code.ResourceExhausted);
    expect(busy.length).toBeGreaterThan(0);
    expect(busy[0]!.rawMessage).toMatch(/sign-in is busy: \d+ sign-ins are waiting; retry in \d+ ms/);
    expect(Number(busy[0]!.metadata.get(RETRY_AFTER_HEADER))).toBeGreaterThan(0);
    expect(outcomes.filter((e) => e?.code === Code.Unauthenticated).length).toBeGreaterThanOrEqual(3);
    expect((await authFrom(narrow.url, "127.0.4.100").login({ username: account.username, password: account.password, deviceName: "d" })).tokens).toBeDefined();
  });

  it("an unknown username takes as long as a wrong password", async () => {
    const account = await createAccount(endpoints, "timing");
    const auth = authFrom(endpoints.metaserver, "127.0.5.1");
    const once = async (username: string) => {
      const t = performance.now();
      expect((await attempt(auth.login(guess(username))))?.code).toBe(Code.Unauthenticated);
      return performance.now() - t;
    };
    // Taken in turns, so that a machine busy for a while slows both alike.
    const [wrong, unknown]: number[][] = [[], []];
    for (let i = 0; i < 7; i++) {
      wrong.push(await once(account.username));
      unknown.push(await once(`never-${randomBytes(4).toString("hex")}`));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[3];
    // Without a stand-in hash an unknown name answers in a millisecond or two; scrypt takes ~100 or more.
    expect(median(unknown)).toBeGreaterThan(median(wrong) / 4);
  });
});

describe("block calls cost what they do", () => {
  it("a HasBlocks of 20,000 hashes costs as many metadata units as it asks about, not one", async () => {
    const tight = await blocks.start("blockserver-tight", 109, { SATCHEL_RATE_LIMITS: JSON.stringify({ metadata: { perSecond: 10, burst: 100 } }) });
    const account: TestAccount = await createAccount(endpoints, "hasblocks");
    const token = await signIn(endpoints, account);
    const client = createClient(BlockService, createGrpcTransport({
      baseUrl: tight.url, nodeOptions: { ca: caOf(endpoints) }, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    }));
    const hashes = Array.from({ length: 20_000 }, (_, i) => createHash("sha256").update(`h${i}`).digest());
    expect((await client.hasBlocks({ hashes })).present.every((p) => !p)).toBe(true);
    const next = await attempt(client.hasBlocks({ hashes: hashes.slice(0, 1) }));
    expect(next?.code).toBe(Code.ResourceExhausted);
    expect(next?.rawMessage).toMatch(/too many metadata reads from this user/);
  });
});
