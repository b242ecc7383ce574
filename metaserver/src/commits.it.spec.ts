import { createHash, randomBytes } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient, type Client } from "@connectrpc/connect";
import type { RowDataPacket } from "mysql2/promise";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { MetaAdminService, MetaService, Operation, type FileMetadata, type JournalEntry } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import {
  MetaserverProcesses, codeOf, createAccount, deviceOf as sharedDeviceOf, openShardOf as sharedOpenShardOf, readBack, shardViolations, storeBlocks,
  type Device, type TestAccount,
} from "@satchel/ops";

const { endpoints, stateDir } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The UTC day the server stamps into conflicted-copy names. */
const utcDay = () => new Date().toISOString().slice(0, 10);

type Meta = Client<typeof MetaService>;

const metaAdmin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: endpoints.serviceToken }));

async function commitContent(dev: Device, path: string, data: Buffer, parentRevision: bigint, requestId = "") {
  const res = await dev.meta.commitFile({ path, blocks: await store(dev, data), size: BigInt(data.length), parentRevision, requestId });
  expect(res.missingBlocks).toEqual([]);
  return res;
}

/** What makes two results of one commit the same version (everything but the clock). */
const identity = (f: FileMetadata | undefined) =>
  f && { path: f.path, revision: f.revision, cursor: f.cursor, size: f.size, namespaceId: f.namespaceId, blocks: f.blocks.map((b) => [hex(b.hash), b.size]) };

async function rootNamespace(meta: Meta): Promise<{ namespaceId: bigint; cursor: bigint }> {
  const root = (await meta.listNamespaces({})).namespaces.find((n) => n.path === "/");
  if (!root) throw new Error("the account has no root namespace");
  return { namespaceId: root.namespaceId, cursor: root.cursor };
}

/** The whole journal of a namespace after a cursor, page by page, with each page's has_more. */
async function journalOf(meta: Meta, namespaceId: bigint, after = 0n, pageSize = 0) {
  const entries: JournalEntry[] = [];
  const hasMore: boolean[] = [];
  let cursor = after;
  for (let page = 0; page < 10_000; page++) {
    const res = await meta.listDelta({ namespaceId, cursor, pageSize });
    expect(res.reset).toBe(false);
    entries.push(...res.entries);
    hasMore.push(res.hasMore);
    if (res.entries.length > 0) expect(res.cursor).toBe(res.entries.at(-1)!.cursor);
    cursor = res.cursor;
    if (!res.hasMore) return { entries, hasMore };
  }
  throw new Error("the journal did not end within 10000 pages");
}

async function eventually(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

// A metaserver of our own beside the cluster's, so that killing it leaves the cluster's running.

const extra = new MetaserverProcesses(endpoints, stateDir);
afterAll(() => extra.stopAll());
const startMetaserver = (name: string, portOffset: number, env: Record<string, string> = {}) => extra.start(name, portOffset, env);
const deviceOf = (account: TestAccount, name: string, metaserverUrl?: string) => sharedDeviceOf(endpoints, account, name, metaserverUrl);
const store = storeBlocks;
const openShardOf = (ns: bigint) => sharedOpenShardOf(endpoints, ns);


describe("commits", () => {
  it("two devices committing one file from the same parent: one wins, the other is kept as a conflicted copy, nothing is lost", async () => {
    const account = await createAccount(endpoints, "conflict");
    const laptop = await deviceOf(account, "laptop");
    const desktop = await deviceOf(account, "desktop");
    const { namespaceId } = await rootNamespace(laptop.meta);
    const original = randomBytes(40_000);
    const base = await commitContent(laptop, "/Reports/plan.txt", original, 0n);
    expect(base.conflict).toBe(false);
    const parent = base.file!.revision;

    const content = { laptop: randomBytes(150_000), desktop: randomBytes(90_000) };
    const refs = { laptop: await store(laptop, content.laptop), desktop: await store(desktop, content.desktop) };
    const dayBefore = utcDay();
    const results = await Promise.all([laptop, desktop].map(async (dev) => {
      const name = dev.name as "laptop" | "desktop";
      const res = await dev.meta.commitFile({ path: "/Reports/plan.txt", blocks: refs[name], size: BigInt(content[name].length), parentRevision: parent });
      return { dev, data: content[name], res };
    }));
    const dayAfter = utcDay();

    const winners = results.filter((r) => !r.res.conflict);
    const losers = results.filter((r) => r.res.conflict);
    expect(winners).toHaveLength(1);
    expect(losers).toHaveLength(1);
    const [winner] = winners;
    const [loser] = losers;
    expect(winner.res.file!.path).toBe("/Reports/plan.txt");
    expect(winner.res.file!.revision).toBeGreaterThan(parent);
    const copyNames = [...new Set([dayBefore, dayAfter])].map((day) => `/Reports/plan (${loser.dev.name}'s conflicted copy ${day}).txt`);
    expect(copyNames).toContain(loser.res.file!.path);
    expect(loser.res.file!.name).toBe(loser.res.file!.path.slice("/Reports/".length));

    // Both uploads read back byte-identical, from either device.
    const current = (await desktop.meta.getFileMetadata({ path: "/Reports/plan.txt" })).file!;
    expect(current.revision).toBe(winner.res.file!.revision);
    expect(hex(sha(await readBack(desktop, current.blocks)))).toBe(hex(sha(winner.data)));
    const copy = (await laptop.meta.getFileMetadata({ path: loser.res.file!.path })).file!;
    expect(copy.revision).toBe(loser.res.file!.revision);
    expect(copy.size).toBe(BigInt(loser.data.length));
    expect(hex(sha(await readBack(laptop, copy.blocks)))).toBe(hex(sha(loser.data)));

    // Other devices learn of both through the journal.
    const { entries } = await journalOf(laptop.meta, namespaceId, base.file!.cursor);
    const puts = entries.filter((e) => e.operation === Operation.PUT).map((e) => ({ path: e.path, revision: e.file?.revision, size: e.file?.size }));
    expect(puts).toEqual(expect.arrayContaining([
      { path: "/Reports/plan.txt", revision: winner.res.file!.revision, size: BigInt(winner.data.length) },
      { path: loser.res.file!.path, revision: loser.res.file!.revision, size: BigInt(loser.data.length) },
    ]));
    // The version both started from is still kept.
    const revisions = (await laptop.meta.listRevisions({ path: "/Reports/plan.txt" })).revisions.map((r) => r.revision);
    expect(revisions).toEqual([winner.res.file!.revision, parent]);
    expect(hex(sha(await readBack(laptop, (await laptop.meta.listRevisions({ path: "/Reports/plan.txt" })).revisions[1].blocks)))).toBe(hex(sha(original)));
  });

  it("a retried request id returns the first result without a second journal entry, also for a conflicted commit", async () => {
    const account = await createAccount(endpoints, "retry");
    const dev = await deviceOf(account, "laptop");
    const { namespaceId } = await rootNamespace(dev.meta);
    const data = randomBytes(20_000);
    const request = { path: "/notes/todo.md", blocks: await store(dev, data), size: BigInt(data.length), parentRevision: 0n, requestId: "commit-todo-1" };
    const first = await dev.meta.commitFile(request);
    const afterFirst = (await rootNamespace(dev.meta)).cursor;
    const retried = await dev.meta.commitFile(request);
    expect(retried.conflict).toBe(false);
    expect(identity(retried.file)).toEqual(identity(first.file));
    expect((await rootNamespace(dev.meta)).cursor).toBe(afterFirst);

    // A client that timed out and resent while the first was still running also commits once.
    const other = { ...request, path: "/notes/other.md", requestId: "commit-other-1" };
    const racing = await Promise.all(Array.from({ length: 4 }, () => dev.meta.commitFile(other)));
    expect(new Set(racing.map((r) => r.file!.revision)).size).toBe(1);

    // The file moves on; an upload from the old parent conflicts, and its retry returns the same copy.
    const second = await commitContent(dev, "/notes/todo.md", randomBytes(5_000), first.file!.revision);
    expect(second.conflict).toBe(false);
    const staleData = randomBytes(7_000);
    const stale = { path: "/notes/todo.md", blocks: await store(dev, staleData), size: BigInt(staleData.length), parentRevision: first.file!.revision, requestId: "commit-todo-stale" };
    const conflicted = await dev.meta.commitFile(stale);
    expect(conflicted.conflict).toBe(true);
    expect(conflicted.file!.path).toMatch(/^\/notes\/todo \(laptop's conflicted copy \d{4}-\d{2}-\d{2}\)\.md$/);
    const cursorBeforeRetry = (await rootNamespace(dev.meta)).cursor;
    const conflictedAgain = await dev.meta.commitFile(stale);
    expect(conflictedAgain.conflict).toBe(true);
    expect(identity(conflictedAgain.file)).toEqual(identity(conflicted.file));
    // The first result is returned even after later commits.
    const firstAgain = await dev.meta.commitFile(request);
    expect(firstAgain.file!.revision).toBe(first.file!.revision);
    expect((await rootNamespace(dev.meta)).cursor).toBe(cursorBeforeRetry);

    const { entries } = await journalOf(dev.meta, namespaceId);
    const putsPerPath = new Map<string, number>();
    for (const e of entries) if (e.operation === Operation.PUT) putsPerPath.set(e.path, (putsPerPath.get(e.path) ?? 0) + 1);
    expect(Object.fromEntries(putsPerPath)).toEqual({ "/notes/todo.md": 2, "/notes/other.md": 1, [conflicted.file!.path]: 1 });
    const listed = (await dev.meta.listFolder({ path: "/notes" })).entries.map((e) => e.path).sort();
    expect(listed).toEqual(["/notes/other.md", conflicted.file!.path, "/notes/todo.md"].sort());
  });

  it("a retried request id reports the first response's modified time, to the millisecond", async () => {
    const account = await createAccount(endpoints, "retrytime");
    const dev = await deviceOf(account, "laptop");
    const differing: string[] = [];
    for (let i = 0; i < 10; i++) {
      const request = { path: `/t/f${i}.txt`, blocks: [], size: 0n, parentRevision: 0n, requestId: `time-${i}` };
      const first = (await dev.meta.commitFile(request)).file!;
      const retried = (await dev.meta.commitFile(request)).file!;
      expect(retried.revision).toBe(first.revision);
      const ms = (f: typeof first) => timestampDate(f.modifiedTime!).toISOString();
      if (ms(first) !== ms(retried)) differing.push(`${first.path}: first ${ms(first)}, retry ${ms(retried)}`);
    }
    expect(differing).toEqual([]);
  });

  it("20 concurrent writers on one namespace: every commit gets its own cursor and the journal counts up by exactly one", async () => {
    const account = await createAccount(endpoints, "writers");
    const writers: Device[] = [];
    for (let w = 0; w < 20; w++) writers.push(await deviceOf(account, `writer-${w}`));
    const { namespaceId } = await rootNamespace(writers[0].meta);
    const shared = randomBytes(4096);
    const sharedRefs = await store(writers[0], shared);
    const committed: { path: string; cursor: bigint; revision: bigint }[] = [];
    await Promise.all(writers.map(async (dev, w) => {
      let own = 0n;
      for (let i = 0; i < 25; i++) {
        // Mostly each writer's own file; every third commit races the others on one of two shared files.
        const racing = i % 3 === 2;
        const path = racing ? `/load/shared-${i % 2}.txt` : `/load/w${w}.txt`;
        const withBlock = i % 2 === 0;
        const res = await dev.meta.commitFile({
          path, blocks: withBlock ? sharedRefs : [], size: withBlock ? BigInt(shared.length) : 0n, parentRevision: racing ? 0n : own,
        });
        if (!racing) {
          expect(res.conflict).toBe(false);
          own = res.file!.revision;
        }
        committed.push({ path: res.file!.path, cursor: res.file!.cursor, revision: res.file!.revision });
      }
    }));
    expect(committed).toHaveLength(500);
    expect(new Set(committed.map((c) => c.cursor)).size).toBe(500);

    const pageSize = 37;
    const { entries, hasMore } = await journalOf(writers[0].meta, namespaceId, 0n, pageSize);
    expect(entries.map((e) => e.cursor)).toEqual(entries.map((_, i) => BigInt(i + 1)));
    expect(hasMore).toEqual(hasMore.map((_, i) => i < hasMore.length - 1));
    expect(hasMore.length).toBeGreaterThanOrEqual(Math.ceil(entries.length / pageSize));
    expect(entries.at(-1)!.cursor).toBe((await rootNamespace(writers[0].meta)).cursor);
    // Each acknowledged commit is the put journaled at its cursor.
    const byCursor = new Map(entries.map((e) => [e.cursor, e]));
    const unjournaled = committed.filter((c) => {
      const e = byCursor.get(c.cursor);
      return !e || e.operation !== Operation.PUT || e.path !== c.path || e.file?.revision !== c.revision;
    });
    expect(unjournaled).toEqual([]);
  });

  it("a metaserver killed in the middle of commits leaves the shard consistent with every acknowledged commit, and a restarted one commits again", async () => {
    const victim = await startMetaserver("metaserver-victim", 70);
    const account = await createAccount(endpoints, "crash");
    const dev = await deviceOf(account, "crash-device", victim.url);
    const { namespaceId } = await rootNamespace(dev.meta);
    const data = randomBytes(8192);
    const refs = await store(dev, data);
    const acknowledged: { path: string; revision: bigint }[] = [];
    const interrupted: string[] = [];
    let stop = false;
    const loops = Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; i < 1000 && !stop; i++) {
        const racing = i % 4 === 3;
        const path = racing ? "/crash/shared.txt" : `/crash/w${w}/n${i}.txt`;
        try {
          const res = await dev.meta.commitFile(
            { path, blocks: i % 2 ? refs : [], size: i % 2 ? BigInt(data.length) : 0n, parentRevision: 0n },
            { timeoutMs: 15_000 },
          );
          acknowledged.push({ path: res.file!.path, revision: res.file!.revision });
        } catch (err) {
          interrupted.push(ConnectError.from(err).message);
          return;
        }
      }
    });
    await eventually("150 acknowledged commits", () => acknowledged.length >= 150 || interrupted.length > 0, 60_000);
    expect(interrupted).toEqual([]);
    await victim.proc.kill();
    stop = true;
    await Promise.all(loops);
    // The power went while commits were in flight.
    expect(interrupted.length).toBeGreaterThan(0);

    const shard = await openShardOf(namespaceId);
    try {
      const { violations, cursor } = await shardViolations(shard, namespaceId);
      expect(violations).toEqual([]);
      const [versions] = await shard.query<RowDataPacket[]>("SELECT path_key, revision FROM file_versions WHERE namespace_id = ?", [namespaceId]);
      const stored = new Set(versions.map((v) => `${Buffer.from(v.path_key).toString()}@${v.revision}`));
      const lost = acknowledged.filter((a) => !stored.has(`${a.path.toLowerCase()}@${a.revision}`));
      expect(lost).toEqual([]);

      // A metaserver started on the same ports takes over, and the journal continues without a gap.
      const restarted = await startMetaserver("metaserver-restarted", 70);
      const again = await deviceOf(account, "crash-device", restarted.url);
      const after = await commitContent(again, "/crash/after-restart.txt", randomBytes(3000), 0n);
      expect(after.file!.cursor).toBe(cursor + 1n);
      expect((await shardViolations(shard, namespaceId)).violations).toEqual([]);
      await restarted.proc.stop(5000);
    } finally {
      await shard.end();
    }
  });
});

describe("ListDelta", () => {
  it("carries puts with their metadata and moves with from_path; resets below the compacted journal; refuses a cursor from the future", async () => {
    const account = await createAccount(endpoints, "delta");
    const dev = await deviceOf(account, "laptop");
    const { namespaceId } = await rootNamespace(dev.meta);
    const one = randomBytes(70_000);
    const put1 = await commitContent(dev, "/Inbox/one.bin", one, 0n);
    const put2 = await commitContent(dev, "/Inbox/two.bin", randomBytes(10), 0n);
    await dev.meta.createFolder({ path: "/Archive" });
    await dev.meta.move({ fromPath: "/Inbox", toPath: "/Archive/2026" });
    await dev.meta.delete({ path: "/Archive/2026/two.bin" });
    const latest = (await rootNamespace(dev.meta)).cursor;

    const { entries } = await journalOf(dev.meta, namespaceId);
    expect(entries.map((e) => [Operation[e.operation], e.path, e.fromPath])).toEqual([
      ["MKDIR", "/Inbox", ""],
      ["PUT", "/Inbox/one.bin", ""],
      ["PUT", "/Inbox/two.bin", ""],
      ["MKDIR", "/Archive", ""],
      ["MOVE", "/Archive/2026", "/Inbox"],
      ["DELETE", "/Archive/2026/two.bin", ""],
    ]);
    expect(entries.at(-1)!.cursor).toBe(latest);
    const firstPut = entries[1].file!;
    expect(firstPut).toMatchObject({ path: "/Inbox/one.bin", name: "one.bin", isFolder: false, revision: put1.file!.revision, size: BigInt(one.length), namespaceId });
    expect(firstPut.blocks.map((b) => [hex(b.hash), b.size])).toEqual(put1.file!.blocks.map((b) => [hex(b.hash), b.size]));
    expect(entries[2].file!.revision).toBe(put2.file!.revision);

    // Caught up: nothing more, same cursor.
    const caughtUp = await dev.meta.listDelta({ namespaceId, cursor: latest });
    expect(caughtUp).toMatchObject({ entries: [], cursor: latest, hasMore: false, reset: false });
    // A cursor this namespace never handed out.
    expect(await codeOf(dev.meta.listDelta({ namespaceId, cursor: latest + 1n }))).toBe("InvalidArgument");

    const compacted = await metaAdmin.compactJournal({ namespaceId, throughCursor: 3n });
    expect(compacted.entriesRemoved).toBe(3n);
    for (const behind of [0n, 2n]) {
      const res = await dev.meta.listDelta({ namespaceId, cursor: behind });
      expect(res).toMatchObject({ entries: [], reset: true, cursor: latest });
    }
    const fromFloor = await dev.meta.listDelta({ namespaceId, cursor: 3n });
    expect(fromFloor.reset).toBe(false);
    expect(fromFloor.entries.map((e) => e.cursor)).toEqual([4n, 5n, 6n]);
  });
});

describe("moves in the journal", () => {
  it("a move into folders that do not exist yet creates them and journals them before the move, without a gap", async () => {
    const account = await createAccount(endpoints, "moveparents");
    const dev = await deviceOf(account, "laptop");
    const { namespaceId } = await rootNamespace(dev.meta);
    const data = randomBytes(1000);
    await commitContent(dev, "/draft/letter.txt", data, 0n);
    const moved = await dev.meta.move({ fromPath: "/draft", toPath: "/Sent/2026/draft" });
    expect(moved.entry!.path).toBe("/Sent/2026/draft");
    const { entries } = await journalOf(dev.meta, namespaceId);
    expect(entries.map((e) => [e.cursor, Operation[e.operation], e.path, e.fromPath])).toEqual([
      [1n, "MKDIR", "/draft", ""],
      [2n, "PUT", "/draft/letter.txt", ""],
      [3n, "MKDIR", "/Sent", ""],
      [4n, "MKDIR", "/Sent/2026", ""],
      [5n, "MOVE", "/Sent/2026/draft", "/draft"],
    ]);
    const letter = (await dev.meta.getFileMetadata({ path: "/Sent/2026/draft/letter.txt" })).file!;
    expect(hex(sha(await readBack(dev, letter.blocks)))).toBe(hex(sha(data)));
    expect(letter.cursor).toBe(5n);
  });
});

describe("WaitForChange", () => {
  it("returns as soon as another device commits, returns empty after its timeout, and refuses namespaces outside the caller's tree", async () => {
    const account = await createAccount(endpoints, "wait");
    const laptop = await deviceOf(account, "laptop");
    const desktop = await deviceOf(account, "desktop");
    const { namespaceId, cursor } = await rootNamespace(laptop.meta);

    const waitStarted = performance.now();
    const waiting = laptop.meta.waitForChange({ cursors: [{ namespaceId, cursor }], timeoutSeconds: 25 });
    await sleep(500);
    const commit = await commitContent(desktop, "/from-desktop.txt", randomBytes(100), 0n);
    const woke = await waiting;
    const waitedMs = performance.now() - waitStarted;
    expect(woke.changed).toEqual([expect.objectContaining({ namespaceId, cursor: commit.file!.cursor })]);
    expect(woke.backoffSeconds).toBe(0);
    expect(waitedMs).toBeLessThan(5000);

    const quietStarted = performance.now();
    const quiet = await laptop.meta.waitForChange({ cursors: [{ namespaceId, cursor: commit.file!.cursor }], timeoutSeconds: 1 });
    const quietMs = performance.now() - quietStarted;
    expect(quiet.changed).toEqual([]);
    expect(quietMs).toBeGreaterThanOrEqual(900);
    expect(quietMs).toBeLessThan(5000);

    // A cursor behind the latest answers at once.
    const behind = await laptop.meta.waitForChange({ cursors: [{ namespaceId, cursor: 0n }], timeoutSeconds: 10 });
    expect(behind.changed.map((c) => c.cursor)).toEqual([commit.file!.cursor]);

    const stranger = await createAccount(endpoints, "stranger");
    const theirs = await rootNamespace((await deviceOf(stranger, "phone")).meta);
    expect(await codeOf(laptop.meta.waitForChange({ cursors: [{ namespaceId: theirs.namespaceId, cursor: 0n }], timeoutSeconds: 1 }))).toBe("PermissionDenied");
    expect(await codeOf(laptop.meta.listDelta({ namespaceId: theirs.namespaceId, cursor: 0n }))).toBe("PermissionDenied");
  });
});

describe("with Redis unreachable", () => {
  // Nothing listens here: the metaserver's Redis connections are refused.
  const closedRedis = () => `${new URL(endpoints.redisUrl).protocol}//127.0.0.1:${Number(new URL(endpoints.metaserver).port) + 89}`;

  it("a metaserver still commits, reports latest cursors from MySQL, and its long poll notices commits made elsewhere", async () => {
    const isolated = await startMetaserver("metaserver-no-redis", 74, { SATCHEL_REDIS_URL: closedRedis() });
    const account = await createAccount(endpoints, "noredis");
    const here = await deviceOf(account, "isolated-device", isolated.url);
    const there = await deviceOf(account, "cluster-device");
    const { namespaceId } = await rootNamespace(here.meta);
    // The cluster's metaserver publishes a cursor to Redis first.
    await commitContent(there, "/before.txt", randomBytes(100), 0n);

    const committed = await commitContent(here, "/during.txt", randomBytes(5000), 0n);
    expect(committed.conflict).toBe(false);
    expect((await rootNamespace(here.meta)).cursor).toBe(committed.file!.cursor);

    const waitStarted = performance.now();
    const waiting = here.meta.waitForChange({ cursors: [{ namespaceId, cursor: committed.file!.cursor }], timeoutSeconds: 20 });
    await sleep(500);
    const elsewhere = await commitContent(there, "/elsewhere.txt", randomBytes(100), 0n);
    const woke = await waiting;
    expect(woke.changed).toEqual([expect.objectContaining({ namespaceId, cursor: elsewhere.file!.cursor })]);
    expect(performance.now() - waitStarted).toBeLessThan(5000);
    expect((await rootNamespace(here.meta)).cursor).toBe(elsewhere.file!.cursor);
    await isolated.proc.stop(5000);
  });

  it("commits made while Redis was unreachable reach every metaserver's ListNamespaces within the cursor key's lifetime", async () => {
    const isolated = await startMetaserver("metaserver-no-redis-2", 77, { SATCHEL_REDIS_URL: closedRedis() });
    const account = await createAccount(endpoints, "stale");
    const here = await deviceOf(account, "isolated-device", isolated.url);
    const there = await deviceOf(account, "cluster-device");
    // Redis learns cursor N from the cluster's metaserver...
    await commitContent(there, "/before.txt", randomBytes(100), 0n);
    // ...then commits land in MySQL without reaching Redis.
    const during = await commitContent(here, "/during.txt", randomBytes(100), 0n);
    await isolated.proc.stop(5000);
    // Redis may still hold the older cursor; its key expires (SATCHEL_CURSOR_CACHE_SECONDS, 10 s),
    // and then the metaserver reads MySQL.
    const deadline = performance.now() + 15_000;
    let seen = (await rootNamespace(there.meta)).cursor;
    while (seen !== during.file!.cursor && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      seen = (await rootNamespace(there.meta)).cursor;
    }
    expect(seen).toBe(during.file!.cursor);
  }, 30_000);
});

describe("recent reservations", () => {
  /** How many blocks the metaserver at metricsUrl reserved itself moments ago, and asked the blockserver about. */
  async function reservationsOf(metricsUrl: string): Promise<{ recent: number; asked: number }> {
    const text = await (await fetch(metricsUrl)).text();
    const value = (answer: string) => Number(text.match(new RegExp(`^satchel_metaserver_block_reservations_total\\{answer="${answer}"\\} (\\S+)$`, "m"))?.[1] ?? NaN);
    return { recent: value("recent"), asked: value("blockserver") };
  }

  it("a block the metaserver reserved moments ago is committed again without asking the blockserver, and every commit reads back", async () => {
    const own = await startMetaserver("metaserver-reservations", 150);
    const off = await startMetaserver("metaserver-no-reservation-reuse", 155, { SATCHEL_RESERVATION_REUSE_SECONDS: "0" });
    const account = await createAccount(endpoints, "reserve");
    const dev = await deviceOf(account, "reserving", own.url);
    const data = randomBytes(4096);
    const other = randomBytes(4096);
    const [refs, otherRefs] = [await store(dev, data), await store(dev, other)];
    const commit = (d: Device, path: string, r = refs) => d.meta.commitFile({ path, blocks: r, size: 4096n });

    await commit(dev, "/r/first");
    expect(await reservationsOf(own.metricsUrl)).toEqual({ recent: 0, asked: 1 });
    await commit(dev, "/r/second");
    await commit(dev, "/r/third");
    expect(await reservationsOf(own.metricsUrl)).toEqual({ recent: 2, asked: 1 });
    // A batch asks only about blocks not reserved moments ago, once each.
    const { results } = await dev.meta.commitBatch({
      changes: ["/r/b1", "/r/b2", "/r/b3"].map((path, i) => ({ change: { case: "commit" as const, value: { path, blocks: i === 2 ? otherRefs : refs, size: 4096n } } })),
    });
    expect(results.map((r) => r.result.case === "commit" && r.result.value.file?.path)).toEqual(["/r/b1", "/r/b2", "/r/b3"]);
    expect(await reservationsOf(own.metricsUrl)).toEqual({ recent: 3, asked: 2 });
    for (const path of ["/r/first", "/r/third", "/r/b3"]) {
      const { file } = await dev.meta.getFileMetadata({ path });
      expect(await readBack(dev, file!.blocks)).toEqual(path === "/r/b3" ? other : data);
    }

    // With reuse off, every commit asks.
    const plain = await deviceOf(account, "asking", off.url);
    await commit(plain, "/r/p1");
    await commit(plain, "/r/p2");
    expect(await reservationsOf(off.metricsUrl)).toEqual({ recent: 0, asked: 2 });
  });
});
