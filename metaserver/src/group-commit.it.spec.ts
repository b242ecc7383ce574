import { randomBytes } from "node:crypto";
import { ConnectError, createClient } from "@connectrpc/connect";
import type { RowDataPacket } from "mysql2/promise";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import {
  MetaserverProcesses, caOf, createAccount, deviceOf, openDirectory, openShardOf, shardViolations, signIn, storeBlocks, type TestAccount,
} from "@satchel/ops";
import { failedPrecondition } from "./errors.js";
import type { CommitInput } from "./store/file-records.js";
import { FileStore } from "./store/files.js";
import { NamespaceTxns } from "./store/namespace-txn.js";
import { NamespacePlacement } from "./store/placement.js";
import { openShardSet, type ShardSet } from "./store/shards.js";

/**
 * Group commit (issue 22) on the real cluster's shards: commits of different namespaces share one
 * shard transaction and one COMMIT; a namespace's commits keep their order; a refused commit is
 * rolled back alone; a SIGKILL in the middle of groups loses no answered commit and leaves none
 * half-written.
 */
const { endpoints, stateDir } = inject("cluster");
const extra = new MetaserverProcesses(endpoints, stateDir);
afterAll(() => extra.stopAll());

async function rootOf(account: TestAccount): Promise<bigint> {
  const meta = createClient(MetaService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: await signIn(endpoints, account, "probe") }));
  const root = (await meta.listNamespaces({})).namespaces.find((n) => n.path === "/");
  if (!root) throw new Error("the account has no root namespace");
  return root.namespaceId;
}

/** Namespace ids by the shard that holds them. */
async function shardsOf(namespaces: bigint[]): Promise<Map<number, bigint[]>> {
  const directory = await openDirectory(endpoints);
  try {
    const [rows] = await directory.query<RowDataPacket[]>("SELECT namespace_id, shard_id FROM namespaces WHERE namespace_id IN (?)", [namespaces]);
    const out = new Map<number, bigint[]>();
    for (const r of rows) out.set(Number(r.shard_id), [...(out.get(Number(r.shard_id)) ?? []), BigInt(r.namespace_id)]);
    return out;
  } finally {
    await directory.end();
  }
}

async function expectConsistent(namespaces: bigint[]): Promise<Map<bigint, bigint>> {
  const cursors = new Map<bigint, bigint>();
  for (const ns of namespaces) {
    const shard = await openShardOf(endpoints, ns);
    try {
      const { violations, cursor } = await shardViolations(shard, ns);
      expect(violations, `namespace ${ns}`).toEqual([]);
      cursors.set(ns, cursor);
    } finally {
      await shard.end();
    }
  }
  return cursors;
}

/** Sizes of the shard-transaction groups the metaserver at metricsUrl committed: how many, and how many held more than one commit. */
async function groupsOf(metricsUrl: string): Promise<{ groups: number; shared: number; commits: number }> {
  const text = await (await fetch(metricsUrl)).text();
  const value = (re: RegExp) => Number(text.match(re)?.[1] ?? 0);
  const groups = value(/^satchel_metaserver_group_commit_members_count (\S+)$/m);
  return {
    groups,
    shared: groups - value(/^satchel_metaserver_group_commit_members_bucket\{le="1"\} (\S+)$/m),
    commits: value(/^satchel_metaserver_group_commit_members_sum (\S+)$/m),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("group commit", () => {
  it("commits of different namespaces that arrive while a group is in flight share the next transaction; a namespace's second commit waits for the group after it; a refused commit is rolled back alone; a group that breaks before COMMIT sends each commit on alone", async () => {
    // Namespaces on one shard (placement is by user id: enough accounts put five on one).
    const roots: bigint[] = [];
    let onOne: bigint[] = [];
    while (onOne.length < 5 && roots.length < 64) {
      const accounts = await Promise.all(Array.from({ length: 8 }, (_, i) => createAccount(endpoints, `group-${roots.length + i}`)));
      roots.push(...(await Promise.all(accounts.map(rootOf))));
      [, onOne] = [...(await shardsOf(roots))].sort((x, y) => y[1].length - x[1].length)[0];
    }
    expect(onOne.length).toBeGreaterThanOrEqual(5);
    const [a, b, c, d, e] = onOne;
    const before = await expectConsistent([a, b, c, d, e]);

    const ca = caOf(endpoints);
    const shards: ShardSet = await openShardSet(endpoints.directoryUrl, 4, ca && { ca });
    try {
      const sizes: number[] = [];
      const alone: string[] = [];
      // One group in flight at a time, so what arrives while it is open waits for the next.
      const txns = new NamespaceTxns(new NamespacePlacement(shards), async () => undefined, {
        members: 64, slots: 1, observe: (n) => sizes.push(n), alone: (reason) => alone.push(reason),
      });
      const files = new FileStore(new NamespacePlacement(shards), txns, { headroom: async () => undefined });
      const commit = (ns: bigint, path: string, requestId = ""): Promise<{ file: { revision: bigint; cursor: bigint }; conflict: boolean }> => {
        const input: CommitInput = { namespaceId: ns, path, blocks: [], size: 0n, parentRevision: 0n, requestId, deviceName: "group-test" };
        return files.commit(input);
      };
      /** A group of one held open until `open()`: a folder made in a, then waiting. */
      const holdShard = () => {
        let open!: () => void;
        const gate = new Promise<void>((r) => (open = r));
        const held = txns.mutate(a, async (t) => {
          await t.ensureFolder(`/held-${randomBytes(3).toString("hex")}`);
          await gate;
        }, undefined, { grouped: true });
        return { open, held };
      };

      // 1. While the shard's one group is held, b, c, d and e queue, and b a second time.
      const first = holdShard();
      await sleep(200);
      const b1 = commit(b, "/one.txt");
      const c1 = commit(c, "/Docs/c.txt");
      const b2 = commit(b, "/two.txt");
      const d1 = commit(d, "/d.txt", "request-d1");
      // Refused after it wrote (a read sends its writes first): only its own writes are undone.
      const e1 = txns.mutate(e, async (t) => {
        await t.ensureFolder("/refused");
        await t.row("/refused/x");
        throw failedPrecondition("refused on purpose");
      }, undefined, { grouped: true });
      const e1Failure = e1.catch((err: unknown) => err);
      await sleep(200);
      expect(sizes).toEqual([]);
      first.open();
      await first.held;
      const [rb1, rc1, rb2, rd1] = await Promise.all([b1, c1, b2, d1]);
      expect(ConnectError.from(await e1Failure).message).toMatch(/refused on purpose/);
      // The held group, then b, c, d and e together, then b's second commit in the group after.
      expect(sizes).toEqual([1, 4, 1]);
      expect(alone).toEqual([]);
      expect(rb1.file.cursor).toBe(before.get(b)! + 1n);
      expect(rb2.file.cursor).toBe(rb1.file.cursor + 1n);
      expect(rc1.file.cursor).toBe(before.get(c)! + 2n); // "/Docs" first
      expect(rd1.file.cursor).toBe(before.get(d)! + 1n);
      const after = await expectConsistent([a, b, c, d, e]);
      expect(after.get(e)).toBe(before.get(e));
      expect(after.get(b)).toBe(rb2.file.cursor);
      expect(await files.get(e, "/refused")).toBeUndefined();
      expect((await files.get(c, "/Docs/c.txt"))?.revision).toBe(rc1.file.revision);
      // The request id was recorded by the group: asking again answers with the same version.
      expect((await commit(d, "/d.txt", "request-d1")).file.revision).toBe(rd1.file.revision);

      // 2. A change that breaks its group (not a refusal: an error of its own) fails the group
      // before COMMIT: nothing of the group is written, and each of its commits goes on alone.
      sizes.length = 0;
      const second = holdShard();
      await sleep(200);
      const c2 = commit(c, "/Docs/c2.txt");
      const d2 = txns.mutate(d, async (t) => {
        await t.ensureFolder("/broken");
        throw new Error("broken on purpose");
      }, undefined, { grouped: true });
      const d2Failure = d2.catch((err: unknown) => err);
      await sleep(200);
      second.open();
      await second.held;
      const rc2 = await c2;
      expect(String(await d2Failure)).toMatch(/broken on purpose/);
      expect(alone.sort()).toEqual(["group_failed", "group_failed"]);
      // The held group and (alone) c2's commit; d2's group never committed.
      expect(sizes).toEqual([1]);
      const last = await expectConsistent([a, b, c, d, e]);
      expect(last.get(c)).toBe(rc2.file.cursor);
      expect(last.get(d)).toBe(after.get(d));
      expect(await files.get(d, "/broken")).toBeUndefined();
    } finally {
      await shards.close();
    }
  });

  it("a metaserver killed with SIGKILL in the middle of group commits loses no answered commit and leaves none half-written; a restarted one goes on from each namespace's cursor", async () => {
    // One group slot per shard, so commits of the 16 writers share groups under any load.
    const victim = await extra.start("metaserver-group-victim", 130, { SATCHEL_GROUP_COMMIT_SLOTS: "1" });
    const accounts = await Promise.all(Array.from({ length: 16 }, (_, i) => createAccount(endpoints, `group-kill-${i}`)));
    const devices = await Promise.all(accounts.map((acc, i) => deviceOf(endpoints, acc, `writer-${i}`, victim.url)));
    const roots = await Promise.all(accounts.map(rootOf));
    const data = randomBytes(4096);
    const refs = await Promise.all(devices.map((dev) => storeBlocks(dev, data)));
    const acknowledged: { ns: bigint; path: string; revision: bigint }[] = [];
    const interrupted: string[] = [];
    let stop = false;
    const loops = devices.map(async (dev, w) => {
      for (let i = 0; i < 2000 && !stop; i++) {
        const path = i % 5 === 4 ? "/kill/same.txt" : `/kill/n${i}.txt`;
        try {
          const res = await dev.meta.commitFile(
            { path, blocks: i % 2 ? refs[w] : [], size: i % 2 ? BigInt(data.length) : 0n, parentRevision: 0n },
            { timeoutMs: 15_000 },
          );
          acknowledged.push({ ns: roots[w], path: res.file!.path, revision: res.file!.revision });
        } catch (err) {
          interrupted.push(ConnectError.from(err).message);
          return;
        }
      }
    });
    const deadline = Date.now() + 90_000;
    while (acknowledged.length < 400 && interrupted.length === 0 && Date.now() < deadline) await sleep(50);
    expect(interrupted).toEqual([]);
    const groups = await groupsOf(victim.metricsUrl);
    // Groups formed: fewer shard transactions than commits, and some held more than one.
    expect(groups.shared).toBeGreaterThan(0);
    expect(groups.groups).toBeLessThan(groups.commits);
    await victim.proc.kill();
    stop = true;
    await Promise.all(loops);
    expect(interrupted.length).toBeGreaterThan(0);

    // Every namespace is whole (journal, versions, files, usage agree: no commit half-written),
    // and every answered commit is there.
    const cursors = await expectConsistent(roots);
    for (const ns of new Set(roots)) {
      const shard = await openShardOf(endpoints, ns);
      try {
        const [versions] = await shard.query<RowDataPacket[]>("SELECT path_key, revision FROM file_versions WHERE namespace_id = ?", [ns]);
        const stored = new Set(versions.map((v) => `${Buffer.from(v.path_key).toString()}@${v.revision}`));
        const lost = acknowledged.filter((x) => x.ns === ns && !stored.has(`${x.path.toLowerCase()}@${x.revision}`));
        expect(lost).toEqual([]);
      } finally {
        await shard.end();
      }
    }

    // A metaserver started on the same ports takes over: each namespace's journal goes on without a gap.
    const restarted = await extra.start("metaserver-group-restarted", 130);
    const again = await Promise.all(accounts.slice(0, 4).map((acc, i) => deviceOf(endpoints, acc, `writer-${i}`, restarted.url)));
    const results = await Promise.all(again.map((dev) => dev.meta.commitFile({ path: "/kill/after-restart.txt", blocks: [], size: 0n, parentRevision: 0n })));
    results.forEach((res, i) => expect(res.file!.cursor).toBe(cursors.get(roots[i])! + 1n));
    await expectConsistent(roots);
    await restarted.proc.stop(5000);
  });
});
