import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport, NAMESPACE_CHANNEL, redisTls } from "@satchel/proto";
import { MetaService, Operation, Role } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { NotifyService, type SubscribeResponse } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import {
  NotifyserverProcesses, codeOf, createAccount, deviceOf, failure, signIn,
  type Device, type NotifyserverProcess, type TestAccount,
} from "@satchel/ops";

const { endpoints, stateDir } = inject("cluster");
/** The channel metaservers publish {namespaceId, cursor, at} on after each commit. */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Notify = Client<typeof NotifyService>;
type Meta = Client<typeof MetaService>;
type Advanced = { namespaceId: bigint; cursor: bigint };

const notifyClient = (baseUrl: string, token?: string): Notify => createClient(NotifyService, createSatchelTransport({ baseUrl, token }));

/**
 * One Subscribe stream read in the background into `events`, so that a test can wait for an event
 * with a deadline, stop reading for a while (pause), and see how the stream ended (error or clean).
 */
class EventStream {
  readonly events: SubscribeResponse[] = [];
  ended = false;
  error?: ConnectError;
  private readonly abort = new AbortController();
  private readonly waiters = new Set<() => void>();
  private gate?: { promise: Promise<void>; open: () => void };

  constructor(client: Notify, req: { namespaceIds?: bigint[] } = {}) {
    void this.pump(client.subscribe(req, { signal: this.abort.signal }));
  }

  private async pump(stream: AsyncIterable<SubscribeResponse>): Promise<void> {
    try {
      for await (const ev of stream) {
        this.events.push(ev);
        this.notify();
        // Paused: the client does not ask for the next message until resumed.
        if (this.gate) await this.gate.promise;
      }
    } catch (err) {
      this.error = ConnectError.from(err);
    } finally {
      this.ended = true;
      this.notify();
    }
  }

  private notify(): void {
    for (const w of this.waiters) w();
  }

  /** Waits until pick() finds something in the events (or the stream's end), failing after timeoutMs. */
  async until<T>(what: string, pick: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = pick();
      if (found !== undefined) return found;
      if (this.ended) throw new Error(`the stream ended (${this.error ? `${Code[this.error.code]}: ${this.error.rawMessage}` : "cleanly"}) before ${what}; events: ${this.describe()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; events: ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
  }

  /** The stream is admitted: its first event (a heartbeat) arrived. */
  opened(timeoutMs = 5000): Promise<SubscribeResponse> {
    return this.until("the first event", () => this.events[0], timeoutMs);
  }

  /** Waits for an advance of the namespace to at least the cursor. */
  reaches(namespaceId: bigint, cursor: bigint, timeoutMs = 5000): Promise<Advanced> {
    return this.until(`namespace ${namespaceId} to reach cursor ${cursor}`, () => this.advances(namespaceId).find((a) => a.cursor >= cursor), timeoutMs);
  }

  /** Waits for the stream to end, cleanly or not. */
  closed(timeoutMs = 5000): Promise<true> {
    return this.until("the end of the stream", () => (this.ended ? true : undefined), timeoutMs);
  }

  advances(namespaceId?: bigint): Advanced[] {
    return this.events.flatMap((e) =>
      e.event.case === "advanced" && (namespaceId === undefined || e.event.value.namespaceId === namespaceId)
        ? [{ namespaceId: e.event.value.namespaceId, cursor: e.event.value.cursor }]
        : [],
    );
  }

  get heartbeats(): number {
    return this.events.filter((e) => e.event.case === "heartbeat").length;
  }

  pause(): void {
    let open!: () => void;
    const promise = new Promise<void>((r) => (open = r));
    this.gate = { promise, open };
  }

  resume(): void {
    const gate = this.gate;
    this.gate = undefined;
    gate?.open();
  }

  close(): void {
    this.resume();
    this.abort.abort();
  }

  describe(): string {
    return JSON.stringify(this.events.map((e) => ({ [e.event.case ?? "none"]: e.event.value })), (_k, v) => (typeof v === "bigint" ? v.toString() : v));
  }
}

/** The stream's first event, or the error it fails with (for codeOf / failure). */
async function firstEvent(stream: AsyncIterable<SubscribeResponse>): Promise<SubscribeResponse> {
  for await (const ev of stream) return ev;
  throw new Error("the stream ended without an event");
}

async function rootNamespace(meta: Meta): Promise<bigint> {
  const root = (await meta.listNamespaces({})).namespaces.find((n) => n.path === "/");
  if (!root) throw new Error("the account has no root namespace");
  return root.namespaceId;
}

let commits = 0;
/** An empty file at a new path (no blocks to upload); returns the namespace's cursor after it. */
async function commitEmpty(dev: Device, folder = ""): Promise<{ namespaceId: bigint; cursor: bigint; path: string }> {
  const path = `${folder}/file-${++commits}-${Date.now()}.txt`;
  const res = await dev.meta.commitFile({ path, blocks: [], size: 0n, parentRevision: 0n });
  expect(res.missingBlocks).toEqual([]);
  return { namespaceId: res.file!.namespaceId, cursor: res.file!.cursor, path };
}

/** The sum of a metric's samples (all label sets) in a Prometheus text exposition; undefined when absent. */
function metricValue(text: string, name: string): number | undefined {
  const samples = text.split("\n").filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (samples.length === 0) return undefined;
  return samples.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

async function scrape(metricsUrl: string): Promise<string> {
  const res = await fetch(metricsUrl, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  return res.text();
}

// Extra notifyservers beside the cluster's, with settings of their own (gRPC at port+offset,
// /metrics at port+offset+1).

const extra = new NotifyserverProcesses(endpoints, stateDir);
let fast: NotifyserverProcess;
let perUserLimited: NotifyserverProcess;
let serverLimited: NotifyserverProcess;
let draining: NotifyserverProcess;
let stalled: NotifyserverProcess;
const DRAIN_SPREAD_MS = 400;

beforeAll(async () => {
  [fast, perUserLimited, serverLimited, draining, stalled] = await Promise.all([
    extra.start("notifyserver-fast", 90, { SATCHEL_HEARTBEAT_SECONDS: "1", SATCHEL_NOTIFY_POLL_TIMEOUT_SECONDS: "1" }),
    extra.start("notifyserver-per-user-limit", 92, { SATCHEL_NOTIFY_MAX_STREAMS_PER_USER: "2" }),
    extra.start("notifyserver-server-limit", 94, { SATCHEL_NOTIFY_MAX_STREAMS: "3" }),
    extra.start("notifyserver-draining", 96, { SATCHEL_NOTIFY_DRAIN_SPREAD_MS: String(DRAIN_SPREAD_MS) }),
    extra.start("notifyserver-stalled", 98),
  ]);
});
afterAll(() => extra.stopAll());

const streams: EventStream[] = [];
/** A stream that the suite closes at the end, whatever happens to the test. */
const subscribe = (client: Notify, req: { namespaceIds?: bigint[] } = {}) => {
  const s = new EventStream(client, req);
  streams.push(s);
  return s;
};
afterAll(() => streams.forEach((s) => s.close()));

describe("notifyserver", () => {
  it("a stream without namespace ids watches every namespace in the caller's tree: heartbeat, the latest cursors, then each commit", async () => {
    const ownerAccount = await createAccount(endpoints, "notify-tree");
    const memberAccount = await createAccount(endpoints, "notify-member");
    const owner = await deviceOf(endpoints, ownerAccount, "laptop");
    const member = await deviceOf(endpoints, memberAccount, "laptop");
    const root = await rootNamespace(owner.meta);
    await owner.meta.createFolder({ path: "/Project" });
    const shared = (await owner.meta.shareFolder({ path: "/Project", username: memberAccount.username, role: Role.EDITOR })).namespaceId;
    expect(shared).not.toBe(root);

    // Commits made before subscribing: the stream starts with where each namespace stands.
    const inRoot = await commitEmpty(owner);
    const inShared = await commitEmpty(owner, "/Project");
    expect(inRoot.namespaceId).toBe(root);
    expect(inShared.namespaceId).toBe(shared);
    const latest = new Map((await owner.meta.listNamespaces({})).namespaces.map((n) => [n.namespaceId, n.cursor]));
    expect(latest.get(root)).toBe(inRoot.cursor);
    expect(latest.get(shared)).toBe(inShared.cursor);

    const stream = subscribe(notifyClient(endpoints.notifyserver, owner.token));
    expect((await stream.opened()).event.case).toBe("heartbeat");
    await stream.until("the latest cursor of both namespaces", () => (stream.advances().length >= 2 ? true : undefined), 5000);
    expect(stream.events[1].event.case).toBe("advanced");
    expect(stream.events[2].event.case).toBe("advanced");
    expect(new Map(stream.advances().map((a) => [a.namespaceId, a.cursor]))).toEqual(new Map([[root, inRoot.cursor], [shared, inShared.cursor]]));

    // The member's tree holds the shared namespace too (mounted by the share), so its stream hears the owner's commits there.
    const memberStream = subscribe(notifyClient(endpoints.notifyserver, member.token));
    await memberStream.opened();
    await memberStream.reaches(shared, inShared.cursor);
    expect(memberStream.advances(root)).toEqual([]);

    // A commit made while subscribed arrives within a few seconds with the commit's cursor.
    const later = await commitEmpty(owner, "/Project");
    expect(later.cursor).toBeGreaterThan(inShared.cursor);
    expect(await stream.reaches(shared, later.cursor, 3000)).toEqual({ namespaceId: shared, cursor: later.cursor });
    expect(await memberStream.reaches(shared, later.cursor, 3000)).toEqual({ namespaceId: shared, cursor: later.cursor });
    const inRootLater = await commitEmpty(owner);
    expect(await stream.reaches(root, inRootLater.cursor, 3000)).toEqual({ namespaceId: root, cursor: inRootLater.cursor });
    // The owner's root is not in the member's tree: the member never hears of it.
    await sleep(300);
    expect(memberStream.advances(root)).toEqual([]);
    expect(stream.error ?? memberStream.error).toBeUndefined();
  });

  it("a commit reaches subscribers on every notifyserver (each listens to the metaservers' channel)", async () => {
    const account = await createAccount(endpoints, "notify-two");
    const dev = await deviceOf(endpoints, account, "laptop");
    const root = await rootNamespace(dev.meta);
    const onCluster = subscribe(notifyClient(endpoints.notifyserver, dev.token), { namespaceIds: [root] });
    const onExtra = subscribe(notifyClient(fast.url, dev.token), { namespaceIds: [root] });
    await Promise.all([onCluster.opened(), onExtra.opened()]);

    const { cursor } = await commitEmpty(dev);
    const [a, b] = await Promise.all([onCluster.reaches(root, cursor, 3000), onExtra.reaches(root, cursor, 3000)]);
    expect(a).toEqual({ namespaceId: root, cursor });
    expect(b).toEqual({ namespaceId: root, cursor });
  });

  it("callers are checked: another user's namespace is PERMISSION_DENIED, no token UNAUTHENTICATED, the service token must name namespaces, Poll needs cursors", async () => {
    const aliceAccount = await createAccount(endpoints, "notify-alice");
    const bobAccount = await createAccount(endpoints, "notify-bob");
    const alice = await deviceOf(endpoints, aliceAccount, "laptop");
    const bob = await deviceOf(endpoints, bobAccount, "laptop");
    const aliceRoot = await rootNamespace(alice.meta);
    const bobRoot = await rootNamespace(bob.meta);
    const bobNotify = notifyClient(endpoints.notifyserver, bob.token);

    const denied = await failure(firstEvent(bobNotify.subscribe({ namespaceIds: [aliceRoot] }, { timeoutMs: 5000 })));
    expect(Code[denied.code]).toBe("PermissionDenied");
    expect(denied.rawMessage).toContain(String(aliceRoot));
    // Asking for one's own namespace together with another's is refused as a whole.
    expect(await codeOf(firstEvent(bobNotify.subscribe({ namespaceIds: [bobRoot, aliceRoot] }, { timeoutMs: 5000 })))).toBe("PermissionDenied");
    expect(await codeOf(bobNotify.poll({ cursors: [{ namespaceId: aliceRoot, cursor: 0n }] }, { timeoutMs: 5000 }))).toBe("PermissionDenied");
    // Bob's own namespace is fine.
    expect((await firstEvent(bobNotify.subscribe({ namespaceIds: [bobRoot] }, { timeoutMs: 5000 }))).event.case).toBe("heartbeat");

    const anonymous = notifyClient(endpoints.notifyserver);
    expect(await codeOf(firstEvent(anonymous.subscribe({}, { timeoutMs: 5000 })))).toBe("Unauthenticated");
    expect(await codeOf(anonymous.poll({ cursors: [{ namespaceId: bobRoot, cursor: 0n }] }, { timeoutMs: 5000 }))).toBe("Unauthenticated");
    const forged = notifyClient(endpoints.notifyserver, "not-a-token");
    expect(await codeOf(firstEvent(forged.subscribe({}, { timeoutMs: 5000 })))).toBe("Unauthenticated");

    const service = notifyClient(endpoints.notifyserver, endpoints.serviceToken);
    const noTree = await failure(firstEvent(service.subscribe({}, { timeoutMs: 5000 })));
    expect(Code[noTree.code]).toBe("InvalidArgument");
    expect(noTree.rawMessage).toMatch(/name the namespaces/);
    // Named namespaces are fine for the service token (it has no tree to check against).
    expect((await firstEvent(service.subscribe({ namespaceIds: [aliceRoot] }, { timeoutMs: 5000 }))).event.case).toBe("heartbeat");

    expect(await codeOf(bobNotify.poll({ cursors: [] }, { timeoutMs: 5000 }))).toBe("InvalidArgument");
  });

  it("Poll answers at once when behind, as soon as a commit lands while waiting, and empty when the server's timeout passes", async () => {
    const account = await createAccount(endpoints, "notify-poll");
    const dev = await deviceOf(endpoints, account, "laptop");
    const root = await rootNamespace(dev.meta);
    const notify = notifyClient(endpoints.notifyserver, dev.token);
    const first = await commitEmpty(dev);

    // Behind: the answer comes at once, with the latest cursor, and no back-off.
    let started = Date.now();
    const behind = await notify.poll({ cursors: [{ namespaceId: root, cursor: first.cursor - 1n }] }, { timeoutMs: 10_000 });
    expect(Date.now() - started).toBeLessThan(1500);
    expect(behind.advanced.map((a) => ({ namespaceId: a.namespaceId, cursor: a.cursor }))).toEqual([{ namespaceId: root, cursor: first.cursor }]);
    expect(behind.retryAfterSeconds).toBe(0);
    expect(behind.timeoutSeconds).toBe(30);

    // Up to date: the poll waits, and answers as soon as a commit lands (long before its 30 s timeout).
    started = Date.now();
    const waiting = notify.poll({ cursors: [{ namespaceId: root, cursor: first.cursor }] }, { timeoutMs: 10_000 });
    await sleep(500);
    const second = await commitEmpty(dev);
    const woken = await waiting;
    expect(Date.now() - started).toBeLessThan(4000);
    expect(woken.advanced.map((a) => ({ namespaceId: a.namespaceId, cursor: a.cursor }))).toEqual([{ namespaceId: root, cursor: second.cursor }]);
    expect(woken.retryAfterSeconds).toBe(0);

    // On a server with a 1 s timeout, a poll at the latest cursor comes back empty after about 1 s.
    started = Date.now();
    const idle = await notifyClient(fast.url, dev.token).poll({ cursors: [{ namespaceId: root, cursor: second.cursor }] }, { timeoutMs: 10_000 });
    const elapsed = Date.now() - started;
    expect(idle.advanced).toEqual([]);
    expect(idle.timeoutSeconds).toBe(1);
    expect(idle.retryAfterSeconds).toBe(0);
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(3000);
  });

  it("a server refuses a user's stream over the per-user limit (naming it) while others connect, and closing a stream frees the slot", async () => {
    const greedyAccount = await createAccount(endpoints, "notify-greedy");
    const otherAccount = await createAccount(endpoints, "notify-other");
    const greedy = notifyClient(perUserLimited.url, await signIn(endpoints, greedyAccount, "laptop"));
    const other = notifyClient(perUserLimited.url, await signIn(endpoints, otherAccount, "laptop"));

    const held = [subscribe(greedy), subscribe(greedy)];
    await Promise.all(held.map((s) => s.opened()));
    const third = await failure(firstEvent(greedy.subscribe({}, { timeoutMs: 5000 })));
    expect(Code[third.code]).toBe("ResourceExhausted");
    expect(third.rawMessage).toMatch(/limit 2/);
    // Long polls count against the same limit.
    const greedyRoot = await rootNamespace(await metaOf(greedyAccount));
    expect(await codeOf(greedy.poll({ cursors: [{ namespaceId: greedyRoot, cursor: 0n }] }, { timeoutMs: 5000 }))).toBe("ResourceExhausted");

    // Another user is not held back by the greedy one.
    const others = subscribe(other);
    expect((await others.opened()).event.case).toBe("heartbeat");

    // Closing one stream frees its slot (once the server notices the cancel).
    held[0].close();
    const deadline = Date.now() + 5000;
    let admitted: SubscribeResponse | undefined;
    while (!admitted) {
      try {
        admitted = await firstEvent(greedy.subscribe({}, { timeoutMs: 5000 }));
      } catch (err) {
        expect(Code[ConnectError.from(err).code]).toBe("ResourceExhausted");
        if (Date.now() > deadline) throw new Error("closing a stream did not free its slot within 5 s");
        await sleep(100);
      }
    }
    expect(admitted.event.case).toBe("heartbeat");

    // A Satchel service (a gateway holding streams for many devices) has no per-user limit.
    const service = notifyClient(perUserLimited.url, endpoints.serviceToken);
    const gateway = [1, 2, 3].map(() => subscribe(service, { namespaceIds: [greedyRoot] }));
    await Promise.all(gateway.map((s) => s.opened()));

    const metrics = await scrape(perUserLimited.metricsUrl);
    expect(metricValue(metrics, 'satchel_notifyserver_refused_total{reason="user_limit"}')).toBeGreaterThanOrEqual(2);
  });

  it("a server refuses the stream over its own limit, whoever asks", async () => {
    const accounts = await Promise.all([1, 2, 3, 4].map((i) => createAccount(endpoints, `notify-crowd${i}`)));
    const clients = await Promise.all(accounts.map(async (a) => notifyClient(serverLimited.url, await signIn(endpoints, a, "laptop"))));
    const held = clients.slice(0, 3).map((c) => subscribe(c));
    await Promise.all(held.map((s) => s.opened()));

    const fourth = await failure(firstEvent(clients[3].subscribe({}, { timeoutMs: 5000 })));
    expect(Code[fourth.code]).toBe("ResourceExhausted");
    expect(fourth.rawMessage).toMatch(/limit of 3/);
    const metrics = await scrape(serverLimited.metricsUrl);
    expect(metricValue(metrics, 'satchel_notifyserver_refused_total{reason="server_limit"}')).toBeGreaterThanOrEqual(1);
    expect(metricValue(metrics, "satchel_notifyserver_open_streams")).toBe(3);
  });

  it("advances a subscriber fell behind on are folded into one per namespace: the latest cursor arrives, every advance is delivered or counted as coalesced", async () => {
    const account = await createAccount(endpoints, "notify-slow");
    const devices = await Promise.all(Array.from({ length: 10 }, (_, i) => deviceOf(endpoints, account, `device-${i}`)));
    const root = await rootNamespace(devices[0].meta);
    const stream = subscribe(notifyClient(stalled.url, devices[0].token), { namespaceIds: [root] });
    await stream.opened();

    // The consumer reads nothing and its server falls behind (stopped: the channel's messages wait
    // in its socket) while 50 commits land, ten devices at a time. A client that merely stops
    // reading is not enough on its own: 50 small events fit in the HTTP/2 window many times over.
    const COMMITS = 50;
    stream.pause();
    process.kill(stalled.proc.pid!, "SIGSTOP");
    let cursors: bigint[];
    try {
      cursors = (await Promise.all(devices.map(async (d) => {
        const mine: bigint[] = [];
        for (let i = 0; i < COMMITS / devices.length; i++) mine.push((await commitEmpty(d)).cursor);
        return mine;
      }))).flat();
    } finally {
      process.kill(stalled.proc.pid!, "SIGCONT");
    }
    const last = cursors.reduce((a, b) => (a > b ? a : b));
    expect(new Set(cursors).size).toBe(COMMITS);
    await sleep(300);
    stream.resume();

    await stream.reaches(root, last, 5000);
    await sleep(300);
    const advances = stream.advances(root);
    expect(advances.map((a) => a.cursor).reduce((a, b) => (a > b ? a : b))).toBe(last);
    expect(advances.length).toBeLessThan(COMMITS / 5);

    // This server has had one subscriber (this stream, on one namespace): every advance it received
    // it either delivered or coalesced. (Metaservers skip publishing a cursor already overtaken by a
    // concurrent commit's, so fewer than COMMITS may have been published.)
    const metrics = await scrape(stalled.metricsUrl);
    const coalesced = metricValue(metrics, "satchel_notifyserver_coalesced_total")!;
    expect(metricValue(metrics, "satchel_notifyserver_notifications_sent_total")).toBe(advances.length);
    expect(coalesced).toBeGreaterThan(0);
    expect(coalesced + advances.length).toBeLessThanOrEqual(COMMITS);
    expect(metricValue(metrics, "satchel_notifyserver_advances_received_total")).toBeGreaterThan(advances.length);
    expect(metricValue(metrics, "satchel_notifyserver_open_streams")).toBe(1);
    expect(metricValue(metrics, "satchel_notifyserver_fanout_latency_seconds_count")).toBe(advances.length);
    // The fan-out latency counts from the metaserver's publish: the stall shows in it.
    expect(metricValue(metrics, "satchel_notifyserver_fanout_latency_seconds_sum")).toBeGreaterThan(0);

    // The cluster's notifyserver exposes the same metrics.
    const clusterMetrics = await scrape(endpoints.metrics.notifyserver);
    for (const name of ["satchel_notifyserver_open_streams", "satchel_notifyserver_coalesced_total", "satchel_notifyserver_fanout_latency_seconds_count"]) {
      expect(metricValue(clusterMetrics, name), name).toBeDefined();
    }
  });

  it("cursors on one stream never go back, even when metaservers publish advances out of order", async () => {
    const account = await createAccount(endpoints, "notify-order");
    const dev = await deviceOf(endpoints, account, "laptop");
    const root = await rootNamespace(dev.meta);
    const stream = subscribe(notifyClient(endpoints.notifyserver, dev.token), { namespaceIds: [root] });
    await stream.opened();

    // Two metaservers finishing concurrent commits publish in either order (the latest-cursor key
    // is raised monotonically, the message carries the commit's own cursor): play that order on the channel.
    const redis = new Redis(endpoints.redisUrl, { ...redisTls(endpoints.redisUrl, undefined), maxRetriesPerRequest: 1 });
    try {
      const publish = (cursor: bigint) => redis.publish(NAMESPACE_CHANNEL, JSON.stringify({ namespaceId: root.toString(), cursor: cursor.toString(), at: Date.now() }));
      await publish(1002n);
      await stream.reaches(root, 1002n, 3000);
      await publish(1001n);
      await publish(1003n);
      await stream.reaches(root, 1003n, 3000);
    } finally {
      redis.disconnect();
    }
    expect(stream.advances(root).map((a) => a.cursor)).toEqual([1002n, 1003n]);
  });

  it("a draining server says so and ends its streams cleanly; the device reconnects elsewhere and catches up from its cursor", async () => {
    const account = await createAccount(endpoints, "notify-drain");
    const dev = await deviceOf(endpoints, account, "laptop");
    const root = await rootNamespace(dev.meta);
    const before = await commitEmpty(dev);

    const stream = subscribe(notifyClient(draining.url, dev.token), { namespaceIds: [root] });
    await stream.reaches(root, before.cursor);
    const cursor = before.cursor;

    const stopped = draining.proc.stop(5000);
    const goodbye = await stream.until("a draining event", () => stream.events.find((e) => e.event.case === "draining"), 3000);
    await stream.closed(3000);
    expect(stream.error).toBeUndefined();
    expect(stream.events.at(-1)).toBe(goodbye);
    const reconnectAfterMs = goodbye.event.case === "draining" ? goodbye.event.value.reconnectAfterMs : -1;
    expect(reconnectAfterMs).toBeGreaterThanOrEqual(0);
    expect(reconnectAfterMs).toBeLessThanOrEqual(DRAIN_SPREAD_MS);
    await stopped;
    expect(await draining.proc.waitExit()).toBe(0);

    // While the device is away, the namespace moves on.
    const missed = await commitEmpty(dev);
    await sleep(reconnectAfterMs);

    const again = subscribe(notifyClient(endpoints.notifyserver, dev.token), { namespaceIds: [root] });
    expect((await again.opened()).event.case).toBe("heartbeat");
    expect(await again.reaches(root, missed.cursor, 3000)).toEqual({ namespaceId: root, cursor: missed.cursor });
    const delta = await dev.meta.listDelta({ namespaceId: root, cursor });
    expect(delta.reset).toBe(false);
    expect(delta.entries.map((e) => ({ cursor: e.cursor, operation: e.operation, path: e.path }))).toEqual([
      { cursor: missed.cursor, operation: Operation.PUT, path: missed.path },
    ]);
    expect(delta.cursor).toBe(missed.cursor);

    const next = await commitEmpty(dev);
    expect(await again.reaches(root, next.cursor, 3000)).toEqual({ namespaceId: root, cursor: next.cursor });
  });

  it("a removed member's streams stop hearing of the folder within seconds (the metaserver announces it), on every notifyserver", async () => {
    const [ownerAccount, memberAccount] = await Promise.all([createAccount(endpoints, "notify-owner"), createAccount(endpoints, "notify-removed")]);
    const [owner, member] = await Promise.all([deviceOf(endpoints, ownerAccount, "laptop"), deviceOf(endpoints, memberAccount, "laptop")]);
    await owner.meta.createFolder({ path: "/Crew" });
    const { namespaceId: crew } = await owner.meta.shareFolder({ path: "/Crew", username: memberAccount.username, role: Role.EDITOR });
    // One stream naming the folder, one watching the whole tree, on two notifyservers.
    const named = subscribe(notifyClient(endpoints.notifyserver, member.token), { namespaceIds: [crew] });
    const whole = subscribe(notifyClient(fast.url, member.token));
    await Promise.all([named.opened(), whole.opened()]);
    const before = await commitEmpty(owner, "/Crew");
    await Promise.all([named.reaches(crew, before.cursor), whole.reaches(crew, before.cursor)]);
    await owner.meta.unshare({ path: "/Crew", username: memberAccount.username });
    await sleep(1500);
    const after = await commitEmpty(owner, "/Crew");
    // The owner's own stream hears it: the commit was published.
    const ownerStream = subscribe(notifyClient(endpoints.notifyserver, owner.token), { namespaceIds: [crew] });
    await ownerStream.reaches(crew, after.cursor);
    await sleep(1000);
    expect(named.advances(crew).some((a) => a.cursor >= after.cursor)).toBe(false);
    expect(whole.advances(crew).some((a) => a.cursor >= after.cursor)).toBe(false);
    // And a new stream or poll is refused it.
    expect(await codeOf(firstEvent(notifyClient(endpoints.notifyserver, member.token).subscribe({ namespaceIds: [crew] })))).toBe("PermissionDenied");
  });

  it("an idle stream hears a heartbeat about every interval", async () => {
    const account = await createAccount(endpoints, "notify-idle");
    const notify = notifyClient(fast.url, await signIn(endpoints, account, "laptop"));
    const stream = subscribe(notify);
    const first = await stream.opened();
    expect(first.event).toMatchObject({ case: "heartbeat", value: { intervalSeconds: 1 } });
    const started = Date.now();
    await sleep(3000);
    // The first heartbeat comes at once; about one a second follows on an idle stream.
    expect(stream.heartbeats - 1).toBeGreaterThanOrEqual(2);
    expect(stream.heartbeats - 1).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 1000) + 1);
    expect(stream.advances()).toEqual([]);
    expect(stream.ended).toBe(false);
  });
});

async function metaOf(account: TestAccount): Promise<Meta> {
  return (await deviceOf(endpoints, account, "laptop")).meta;
}
