import { randomBytes } from "node:crypto";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createLogger, createSatchelTransport } from "@satchel/proto";
import { BlockAdminService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { MetaAdminService, type VerifiedBlock, type VerifyResponse } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { caOf, cliEnv, createAccount, deviceOf, runCli, failure, minioClient, readBack, storeBlocks, type Device, type TestAccount } from "@satchel/ops";
import { openShardSet } from "./store/shards.js";
import { VersionReads } from "./store/version-reads.js";
import { verify as verifyInProcess } from "./verify/verifier.js";

const { endpoints } = inject("cluster");
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const json = (v: unknown) => JSON.stringify(v, (_, x: unknown) => (typeof x === "bigint" ? x.toString() : x));

const metaAdmin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: endpoints.serviceToken }));
const verify = () => metaAdmin.verify({ unthrottled: true }, { timeoutMs: 600_000 });

interface ShardObject { node: (typeof endpoints.storageNodes)[number]; key: string; index: number }

/** Every shard object of a block, found by reading every storage node for its key prefix. */
async function shardObjects(hash: Uint8Array): Promise<ShardObject[]> {
  const h = hex(hash);
  const found: ShardObject[] = [];
  await Promise.all(endpoints.storageNodes.map(async (node) => {
    const stream = minioClient(node).listObjectsV2(node.bucket, `blocks/${h.slice(0, 2)}/${h}.`, false);
    for await (const item of stream as AsyncIterable<{ name?: string }>) {
      if (item.name) found.push({ node, key: item.name, index: Number(item.name.slice(item.name.lastIndexOf(".") + 1)) });
    }
  }));
  return found.sort((a, b) => a.index - b.index);
}

async function readObject(o: ShardObject): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await minioClient(o.node).getObject(o.node.bucket, o.key)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Shard objects removed by the test, with their bytes, to be put back whatever happens. */
const removed: { object: ShardObject; bytes: Buffer }[] = [];

async function removeShards(objects: ShardObject[]): Promise<void> {
  for (const object of objects) {
    const bytes = await readObject(object);
    removed.push({ object, bytes });
    await minioClient(object.node).removeObject(object.node.bucket, object.key);
  }
}

/** Puts every removed shard back where it was, unless a repair already rewrote it there. */
async function putBack(): Promise<void> {
  while (removed.length > 0) {
    const { object, bytes } = removed.pop()!;
    const present = await minioClient(object.node).statObject(object.node.bucket, object.key).then(() => true, () => false);
    if (!present) await minioClient(object.node).putObject(object.node.bucket, object.key, bytes, bytes.length);
  }
}

function runSatchel(args: string[], account: TestAccount) {
  return runCli(args, cliEnv(endpoints, account, { SATCHEL_SERVICE_TOKEN: endpoints.serviceToken })).done;
}

async function metric(name: string): Promise<number | undefined> {
  const text = await (await fetch(endpoints.metrics.metaserver)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

const summary = (r: VerifyResponse) => ({
  versionsChecked: Number(r.versionsChecked), blocksChecked: Number(r.blocksChecked), blocksUnreadable: Number(r.blocksUnreadable),
  blocksLost: Number(r.blocksLost), blocksBelowFullRedundancy: Number(r.blocksBelowFullRedundancy),
  referencesToMissingBlocks: Number(r.referencesToMissingBlocks), problems: r.problems.length, seconds: r.seconds.toFixed(2),
});
const simplify = (p: VerifiedBlock) => ({
  hash: hex(p.hash), kind: p.kind, shardsGood: p.shardsGood, shardsTotal: p.shardsTotal, filesNotListed: Number(p.filesNotListed),
  files: p.files.map((f) => ({ namespaceId: f.namespaceId, path: f.path, revision: f.revision, owner: f.owner })),
});

interface Committed { path: string; revision: bigint; namespaceId: bigint; blocks: { hash: Uint8Array; size: number }[]; data: Buffer }

async function commit(dev: Device, path: string, data: Buffer, parentRevision = 0n): Promise<Committed> {
  const blocks = await storeBlocks(dev, data);
  const res = await dev.meta.commitFile({ path, blocks, size: BigInt(data.length), parentRevision });
  expect(res.missingBlocks).toEqual([]);
  expect(res.conflict).toBe(false);
  return { path, revision: res.file!.revision, namespaceId: res.file!.namespaceId, blocks, data };
}

let alice: TestAccount;
let bob: TestAccount;
let aliceDevice: Device;
/** Every block hash of the two accounts' versions. */
const ours = new Set<string>();
let report: Committed;
let photo: Committed;
let baseline: VerifyResponse;

beforeAll(async () => {
  alice = await createAccount(endpoints, "verify-alice");
  bob = await createAccount(endpoints, "verify-bob");
  aliceDevice = await deviceOf(endpoints, alice, "laptop");
  const bobDevice = await deviceOf(endpoints, bob, "laptop");
  // Four blocks of 64 KiB each; the second revision shares none of them with the first.
  const first = await commit(aliceDevice, "/Reports/Q3 Summary.bin", randomBytes(200_000));
  report = await commit(aliceDevice, "/Reports/Q3 Summary.bin", randomBytes(230_000), first.revision);
  photo = await commit(aliceDevice, "/Photos/Cat.bin", randomBytes(150_000));
  const notes = await commit(bobDevice, "/notes.bin", randomBytes(100_000));
  const data = await commit(bobDevice, "/Work/data.bin", randomBytes(300_000));
  for (const c of [first, report, photo, notes, data]) for (const b of c.blocks) ours.add(hex(b.hash));
});

afterAll(async () => {
  await putBack();
});

describe("the verifier (MetaAdminService/Verify, satchel admin verify)", () => {
  it("is for operators: no token is UNAUTHENTICATED, a user's access token PERMISSION_DENIED", async () => {
    const anonymous = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver }));
    expect((await failure(anonymous.verify({}))).code).toBe(Code.Unauthenticated);
    const asUser = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: aliceDevice.token }));
    expect((await failure(asUser.verify({}))).code).toBe(Code.PermissionDenied);
  });

  it("with every shard in place, no block of any file of the two users is reported, and every referenced block is readable", async () => {
    baseline = await verify();
    console.log(`baseline verify: ${JSON.stringify(summary(baseline))}`);
    // Other suites sharing the cluster may have damaged their own files on purpose; none may touch ours.
    expect(baseline.problems.filter((p) => ours.has(hex(p.hash))).map(simplify)).toEqual([]);
    expect(Number(baseline.versionsChecked)).toBeGreaterThanOrEqual(5);
    expect(Number(baseline.blocksChecked)).toBeGreaterThanOrEqual(ours.size);
    expect(Number(baseline.bytesRead)).toBeGreaterThan(0);
    for (const p of baseline.problems) console.log(`  problem left by another suite: ${json(simplify(p))}`);
    expect(await metric("satchel_metaserver_verify_unreadable_blocks")).toBe(Number(baseline.blocksUnreadable));
    expect(await metric("satchel_metaserver_verify_last_run_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 600);
  });

  it("one verify at a time: a second call while one runs is FAILED_PRECONDITION", async () => {
    const [a, b] = await Promise.allSettled([verify(), verify()]);
    const outcomes = [a, b].map((o) => (o.status === "fulfilled" ? "OK" : Code[(o.reason as { code: Code }).code]));
    expect(outcomes.sort()).toEqual(["FailedPrecondition", "OK"]);
  });

  it("three of six shards gone: the block is reported lost with alice's file, path, revision and owner; one shard gone is only degraded", async () => {
    const lostBlock = report.blocks[1].hash;
    const degradedBlock = photo.blocks[0].hash;
    const lostShards = await shardObjects(lostBlock);
    expect(lostShards.map((s) => s.index)).toEqual([0, 1, 2, 3, 4, 5]);
    const degradedShards = await shardObjects(degradedBlock);
    expect(degradedShards).toHaveLength(6);
    await removeShards(lostShards.slice(0, 3));
    await removeShards(degradedShards.slice(5));
    const runsBefore = await metric('satchel_metaserver_verify_runs_total{result="ok"}');

    const after = await verify();
    console.log(`verify after the damage: ${JSON.stringify(summary(after))}`);
    const before = new Set(baseline.problems.map((p) => hex(p.hash)));
    const fresh = after.problems.filter((p) => !before.has(hex(p.hash))).map(simplify);
    for (const p of fresh) console.log(`  found: ${json(p)}`);

    const lost = fresh.find((p) => p.hash === hex(lostBlock));
    expect(lost).toEqual({
      hash: hex(lostBlock), kind: "lost", shardsGood: 3, shardsTotal: 6, filesNotListed: 0,
      files: [{ namespaceId: report.namespaceId, path: "/Reports/Q3 Summary.bin", revision: report.revision, owner: alice.username }],
    });
    // InspectBlocks queues the repair only after reading the block, so the run that reads it sees it
    // degraded; only a repair that happened before (a scrub pass) can have made it whole already,
    // and then its shard is back on a node.
    const degraded = fresh.find((p) => p.hash === hex(degradedBlock));
    if (degraded) {
      expect(degraded).toEqual({
        hash: hex(degradedBlock), kind: "degraded", shardsGood: 5, shardsTotal: 6, filesNotListed: 0,
        files: [{ namespaceId: photo.namespaceId, path: "/Photos/Cat.bin", revision: photo.revision, owner: alice.username }],
      });
    } else {
      console.log("the degraded block was repaired before the verify read it");
      expect(await shardObjects(degradedBlock)).toHaveLength(6);
    }
    // Nothing else is new, and only the lost block counts as unreadable.
    expect(fresh.map((p) => p.hash).sort()).toEqual((degraded ? [hex(lostBlock), hex(degradedBlock)] : [hex(lostBlock)]).sort());
    expect(Number(after.blocksUnreadable)).toBe(Number(baseline.blocksUnreadable) + 1);
    expect(Number(after.blocksLost)).toBe(Number(baseline.blocksLost) + 1);
    expect(Number(after.referencesToMissingBlocks)).toBe(Number(baseline.referencesToMissingBlocks));
    expect(Number(after.blocksBelowFullRedundancy)).toBeGreaterThanOrEqual(degraded ? 2 : 1);
    expect(after.problems[0].kind, "unreadable blocks are listed first").not.toBe("degraded");

    expect(await metric("satchel_metaserver_verify_unreadable_blocks")).toBe(Number(after.blocksUnreadable));
    expect(await metric("satchel_metaserver_verify_lost_blocks")).toBe(Number(after.blocksLost));
    expect(await metric("satchel_metaserver_verify_below_full_redundancy_blocks")).toBe(Number(after.blocksBelowFullRedundancy));
    expect(await metric('satchel_metaserver_verify_runs_total{result="ok"}')).toBe(runsBefore! + 1);

    // The operator's view: the CLI names the file and exits non-zero.
    const cli = await runSatchel(["admin", "verify", "--unthrottled"], bob);
    console.log(cli.stdout);
    expect(cli.stderr, cli.stderr).not.toMatch(/satchel:/);
    expect(cli.code).toBe(1);
    const row = cli.stdout.split("\n").find((l) => l.includes(hex(lostBlock).slice(0, 16)));
    expect(row).toMatch(new RegExp(`^lost\\s+3/6\\s+${hex(lostBlock).slice(0, 16)}\\s+${report.namespaceId}\\s+${report.revision}\\s+${alice.username}\\s+/Reports/Q3 Summary\\.bin$`));

    // Memory stays bounded by walking the hash space in ranges: a budget of four hashes (many
    // ranges, each a walk of its own) inspects every block once and finds the same loss.
    const ca = caOf(endpoints);
    const shards = await openShardSet(endpoints.directoryUrl, 2, ca && { ca });
    try {
      const blockAdmin = createClient(BlockAdminService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken }));
      const split = await verifyInProcess(new VersionReads(shards), blockAdmin, createLogger("verify-test", "silent"), { unthrottled: true, hashesInMemory: 4 });
      expect(split.blocksChecked).toBe(Number(after.blocksChecked));
      expect(split.versionsChecked).toBe(Number(after.versionsChecked));
      expect(split.blocksLost).toBe(Number(after.blocksLost));
      const splitLost = split.problems.find((p) => p.hash.equals(Buffer.from(lostBlock)));
      expect(splitLost).toMatchObject({ kind: "lost", shardsGood: 3, files: lost!.files });
    } finally {
      await shards.close();
    }
  });

  it("with the shards put back, the block is whole again with no operator action, and nothing of ours is reported", async () => {
    await putBack();
    const healed = await verify();
    console.log(`verify after putting the shards back: ${JSON.stringify(summary(healed))}`);
    expect(healed.problems.filter((p) => ours.has(hex(p.hash))).map(simplify)).toEqual([]);
    expect(Number(healed.blocksLost)).toBe(Number(baseline.blocksLost));
    const current = await aliceDevice.meta.getFileMetadata({ path: report.path });
    expect((await readBack(aliceDevice, current.file!.blocks)).equals(report.data)).toBe(true);
  });
});
