import { createHash, randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Connection, RowDataPacket } from "mysql2/promise";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { MetaAdminService, Operation } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import {
  MetaserverProcesses, createAccount, deviceOf as sharedDeviceOf, openDirectory as sharedOpenDirectory, openShard as sharedOpenShard, readBack,
  shardViolations as sharedShardViolations, storeBlocks, type Device, type TestAccount,
} from "@satchel/ops";

const { endpoints, stateDir } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const admin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: endpoints.serviceToken }));
/** Per-namespace tables a move carries over (namespace_state aside). */
const NAMESPACE_TABLES = ["files", "file_versions", "journal", "commit_requests"];

const deviceOf = (account: TestAccount, name: string, metaserverUrl?: string) => sharedDeviceOf(endpoints, account, name, metaserverUrl);

/** Stores content as one block. */
async function store(dev: Device, data: Buffer): Promise<{ hash: Uint8Array; size: number }[]> {
  return storeBlocks(dev, data, Math.max(data.length, 1));
}

async function commit(dev: Device, path: string, data: Buffer, parentRevision = 0n) {
  const res = await dev.meta.commitFile({ path, blocks: await store(dev, data), size: BigInt(data.length), parentRevision });
  expect(res.missingBlocks).toEqual([]);
  return res.file!;
}

async function rootNamespace(dev: Device): Promise<{ namespaceId: bigint; cursor: bigint }> {
  const root = (await dev.meta.listNamespaces({})).namespaces.find((n) => n.path === "/");
  if (!root) throw new Error("the account has no root namespace");
  return { namespaceId: root.namespaceId, cursor: root.cursor };
}

async function shardIdOf(directory: Connection, ns: bigint): Promise<number> {
  const [rows] = await directory.query<RowDataPacket[]>("SELECT shard_id FROM namespaces WHERE namespace_id = ?", [ns]);
  return Number(rows[0].shard_id);
}

async function shardIds(directory: Connection): Promise<number[]> {
  const [rows] = await directory.query<RowDataPacket[]>("SELECT shard_id FROM shards ORDER BY shard_id");
  return rows.map((r) => Number(r.shard_id));
}

const openDirectory = () => sharedOpenDirectory(endpoints);
const openShard = (directory: Connection, shardId: number) => sharedOpenShard(endpoints, directory, shardId);

/** Rows one namespace has in each per-namespace table of a shard. */
async function rowCounts(shard: Connection, ns: bigint): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of NAMESPACE_TABLES) {
    const [[r]] = await shard.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${t} WHERE namespace_id = ?`, [ns]);
    out[t] = Number(r.n);
  }
  return out;
}

/** What must hold for a namespace on its shard, as a list of violations (empty when consistent). */
async function shardViolations(shard: Connection, ns: bigint): Promise<string[]> {
  return (await sharedShardViolations(shard, ns)).violations;
}

const extra = new MetaserverProcesses(endpoints, stateDir);
afterAll(() => extra.stopAll());

/** A second metaserver of our own, beside the cluster's. */
const startMetaserver = (name: string, portOffset: number) => extra.start(name, portOffset);

describe("moving a namespace between shards", () => {
  it("under continuous writes, every acknowledged commit ends up on the new shard, the old shard keeps nothing, and no writer sees an error", async () => {
    const account = await createAccount(endpoints, "mover");
    const setup = await deviceOf(account, "setup");
    const { namespaceId } = await rootNamespace(setup);

    // History worth keeping: versions, the trash, a moved folder.
    const versions = [randomBytes(20_000), randomBytes(30_000), randomBytes(25_000)];
    let a = await commit(setup, "/docs/a.txt", versions[0]);
    for (const v of versions.slice(1)) a = await commit(setup, "/docs/a.txt", v, a.revision);
    await commit(setup, "/docs/b.txt", randomBytes(1000));
    const trashed = randomBytes(4000);
    await commit(setup, "/trash/old.txt", trashed);
    await setup.meta.delete({ path: "/trash/old.txt" });
    const photo = randomBytes(50_000);
    await commit(setup, "/photos/p1.jpg", photo);
    await commit(setup, "/photos/p2.jpg", randomBytes(10));
    await setup.meta.createFolder({ path: "/albums" });
    await setup.meta.move({ fromPath: "/photos", toPath: "/albums/photos" });
    const idempotent = { path: "/docs/once.txt", blocks: [], size: 0n, parentRevision: 0n, requestId: "before-the-move" };
    const once = (await setup.meta.commitFile(idempotent)).file!;

    const directory = await openDirectory();
    try {
      const source = await shardIdOf(directory, namespaceId);
      const ids = await shardIds(directory);
      const target = ids[(ids.indexOf(source) + 1) % ids.length];

      const writers: Device[] = [];
      for (let w = 0; w < 8; w++) writers.push(await deviceOf(account, `writer-${w}`));
      const payload = randomBytes(2048);
      const payloadRefs = await store(writers[0], payload);
      const acknowledged: { path: string; revision: bigint; at: number }[] = [];
      const failed: { code: string; message: string; at: number }[] = [];
      const ownLatest = new Map<string, bigint>();
      let stop = false;
      const hardStop = Date.now() + 120_000;
      const running = writers.map(async (dev, w) => {
        const own = `/load/w${w}.txt`;
        let ownRevision = 0n;
        for (let i = 0; i < 20_000 && !stop && Date.now() < hardStop; i++) {
          const kind = i % 3;
          const path = kind === 0 ? own : kind === 1 ? `/load/w${w}/n${i}.txt` : "/load/shared.txt";
          try {
            const res = await dev.meta.commitFile({
              path, blocks: i % 2 ? payloadRefs : [], size: i % 2 ? BigInt(payload.length) : 0n, parentRevision: kind === 0 ? ownRevision : 0n,
              requestId: kind === 1 ? `w${w}-${i}` : "",
            }, { timeoutMs: 60_000 });
            acknowledged.push({ path: res.file!.path, revision: res.file!.revision, at: performance.now() });
            if (kind === 0) {
              expect(res.conflict).toBe(false);
              ownRevision = res.file!.revision;
              ownLatest.set(own, ownRevision);
            }
          } catch (err) {
            const e = ConnectError.from(err);
            failed.push({ code: Code[e.code], message: e.rawMessage, at: performance.now() });
          }
        }
      });

      await sleep(800);
      const moveStarted = performance.now();
      const moved = await admin.moveNamespace({ namespaceId, targetShardId: target }, { timeoutMs: 120_000 });
      const moveEnded = performance.now();
      await sleep(1500);
      stop = true;
      await Promise.all(running);

      // Report what the writers saw, in case some writes failed.
      console.log(`namespace move: ${acknowledged.length} commits acknowledged, ${failed.length} failed; move took ${Math.round(moveEnded - moveStarted)} ms, writes held ${moved.writesHeldMs} ms, ${moved.rowsCopied} rows copied`);
      expect(failed).toEqual([]);
      expect(acknowledged.filter((c) => c.at < moveStarted).length).toBeGreaterThan(0);
      expect(acknowledged.filter((c) => c.at > moveStarted && c.at < moveEnded).length).toBeGreaterThan(0);
      expect(acknowledged.filter((c) => c.at > moveEnded).length).toBeGreaterThan(0);

      expect(moved.sourceShardId).toBe(source);
      expect(moved.targetShardId).toBe(target);
      expect(moved.rowsCopied).toBeGreaterThan(0n);
      expect(moved.writesHeldMs).toBeGreaterThan(0);
      expect(moved.writesHeldMs).toBeLessThan(15_000);
      expect(await shardIdOf(directory, namespaceId)).toBe(target);

      const oldShard = await openShard(directory, source);
      const newShard = await openShard(directory, target);
      try {
        expect(await rowCounts(oldShard, namespaceId)).toEqual({ files: 0, file_versions: 0, journal: 0, commit_requests: 0 });
        const [oldState] = await oldShard.query<RowDataPacket[]>("SELECT state FROM namespace_state WHERE namespace_id = ?", [namespaceId]);
        expect(oldState.map((r) => r.state)).toEqual(["moved"]);
        expect(await shardViolations(newShard, namespaceId)).toEqual([]);

        const [versionRows] = await newShard.query<RowDataPacket[]>("SELECT path_key, revision FROM file_versions WHERE namespace_id = ?", [namespaceId]);
        const stored = new Set(versionRows.map((v) => `${Buffer.from(v.path_key).toString()}@${v.revision}`));
        expect(acknowledged.filter((c) => !stored.has(`${c.path.toLowerCase()}@${c.revision}`))).toEqual([]);
        // Each writer's own file is at the revision its last acknowledged commit made.
        const [ownRows] = await newShard.query<RowDataPacket[]>(
          "SELECT path, revision FROM files WHERE namespace_id = ? AND path_key IN (?)", [namespaceId, [...ownLatest.keys()]],
        );
        expect(Object.fromEntries(ownRows.map((r) => [r.path, BigInt(r.revision)]))).toEqual(Object.fromEntries(ownLatest));

        // The history came along: versions, the trash, the moved folder and its journal entry.
        const current = (await setup.meta.getFileMetadata({ path: "/docs/a.txt" })).file!;
        expect(hex(sha(await readBack(setup, current.blocks)))).toBe(hex(sha(versions[2])));
        const kept = (await setup.meta.listRevisions({ path: "/docs/a.txt" })).revisions;
        expect(kept).toHaveLength(3);
        expect(hex(sha(await readBack(setup, kept[2].blocks)))).toBe(hex(sha(versions[0])));
        const inTrash = (await setup.meta.listFolder({ path: "/trash", includeDeleted: true })).entries;
        expect(inTrash.map((e) => [e.path, e.isDeleted])).toEqual([["/trash/old.txt", true]]);
        await setup.meta.undelete({ path: "/trash/old.txt" });
        const restored = (await setup.meta.getFileMetadata({ path: "/trash/old.txt" })).file!;
        expect(hex(sha(await readBack(setup, restored.blocks)))).toBe(hex(sha(trashed)));
        const p1 = (await setup.meta.getFileMetadata({ path: "/albums/photos/p1.jpg" })).file!;
        expect(hex(sha(await readBack(setup, p1.blocks)))).toBe(hex(sha(photo)));
        const journal = await setup.meta.listDelta({ namespaceId, cursor: 0n, pageSize: 20 });
        expect(journal.entries.filter((e) => e.operation === Operation.MOVE).map((e) => [e.path, e.fromPath])).toEqual([["/albums/photos", "/photos"]]);

        // A retry of a commit made before the move still returns its first result.
        const retried = await setup.meta.commitFile(idempotent);
        expect([retried.file!.path, retried.file!.revision]).toEqual([once.path, once.revision]);

        // Writes go on, on the new shard, continuing the journal.
        const [[before]] = await newShard.query<RowDataPacket[]>("SELECT cursor_position FROM namespace_state WHERE namespace_id = ?", [namespaceId]);
        const after = await commit(setup, "/after-move.txt", randomBytes(100));
        expect(after.cursor).toBe(BigInt(before.cursor_position) + 1n);
        expect((await rootNamespace(setup)).cursor).toBe(after.cursor);
        expect(await shardViolations(newShard, namespaceId)).toEqual([]);
        expect((await rowCounts(oldShard, namespaceId)).journal).toBe(0);
      } finally {
        await oldShard.end();
        await newShard.end();
      }
    } finally {
      await directory.end();
    }
  });

  it("a metaserver that did not run the move serves the namespace from its new shard", async () => {
    const other = await startMetaserver("metaserver-bystander", 83);
    const account = await createAccount(endpoints, "movedreads");
    const here = await deviceOf(account, "cluster-device");
    const there = await deviceOf(account, "bystander-device", other.url);
    const { namespaceId } = await rootNamespace(here);
    const data = randomBytes(10_000);
    await commit(here, "/kept.txt", data);
    // The bystander reads the namespace first, so it knows where it lives.
    expect((await there.meta.getFileMetadata({ path: "/kept.txt" })).file!.size).toBe(BigInt(data.length));
    const { cursor } = await rootNamespace(there);

    const directory = await openDirectory();
    try {
      const ids = await shardIds(directory);
      const source = await shardIdOf(directory, namespaceId);
      await admin.moveNamespace({ namespaceId, targetShardId: ids[(ids.indexOf(source) + 1) % ids.length] });
    } finally {
      await directory.end();
    }
    const later = await commit(here, "/later.txt", randomBytes(100));

    const kept = await there.meta.getFileMetadata({ path: "/kept.txt" }).then((r) => r.file!, (err) => ConnectError.from(err));
    expect.soft(kept).toMatchObject({ path: "/kept.txt", size: BigInt(data.length) });
    const delta = await there.meta.listDelta({ namespaceId, cursor }).then((r) => r.entries.map((e) => e.path), (err) => ConnectError.from(err));
    expect.soft(delta).toEqual(["/later.txt"]);
    const woke = await there.meta.waitForChange({ cursors: [{ namespaceId, cursor }], timeoutSeconds: 3 });
    expect.soft(woke.changed.map((c) => c.cursor)).toEqual([later.cursor]);
    await other.proc.stop(5000);
  });
});
