import { createHash, randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import type { RowDataPacket } from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createLogger, createSatchelTransport, indexShardOf, ShardPools } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { caOf, minioClient, eventually } from "@satchel/ops";
import { BlockIndex } from "./block-index/block-index.js";
import { ErasureCodec } from "./codec/erasure.js";
import { BlockserverMetrics } from "./metrics.js";
import { NodeSet } from "./nodes/node-set.js";
import { Repairer } from "./repair/repairer.js";
import { decodeShard } from "./shard-format/shard-format.js";
import { ShardIO, shardKey, type ShardedBlock } from "./shard-io/shard-io.js";

const { endpoints } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const logger = createLogger("repair-claims-test", "warn");
const s3 = (name: string) => {
  const n = endpoints.storageNodes.find((s) => s.name === name)!;
  return { client: minioClient(n), bucket: n.bucket };
};

let blocks: ReturnType<typeof createClient<typeof BlockService>>;
let admin: ReturnType<typeof createClient<typeof BlockAdminService>>;
/** The blockserver's index shards, read straight from MariaDB. */
let indexShards: ShardPools;
/** The block index and storage nodes, opened in this process beside the cluster's blockserver. */
let index: BlockIndex;
let nodes: NodeSet;

/** Runs one statement on the index shard that holds `hash`, straight through MariaDB. */
async function onIndexShard(hash: Buffer, sql: string, params: unknown[]): Promise<RowDataPacket[]> {
  const [rows] = await indexShards.shards[indexShardOf(hash, indexShards.shards.length)].query<RowDataPacket[]>(sql, params);
  return rows;
}

const shardRows = async (hash: Buffer) =>
  (await onIndexShard(hash, "SELECT shard_index, node, state FROM block_shards WHERE hash = ? ORDER BY shard_index", [hash])) as { shard_index: number; node: string; state: string }[];
const queueRows = (hash: Buffer) => onIndexShard(hash, "SELECT * FROM repair_queue WHERE hash = ?", [hash]);

async function shardIsSound(hash: Buffer, index: number, node: string): Promise<boolean> {
  const { client, bucket } = s3(node);
  const chunks: Buffer[] = [];
  try {
    for await (const c of await client.getObject(bucket, shardKey(hash, index))) chunks.push(c as Buffer);
  } catch {
    return false;
  }
  const { header } = decodeShard(Buffer.concat(chunks));
  return header.blockHash.equals(hash) && header.index === index;
}


/** Shards rebuilt by the cluster's own blockserver so far (it repairs from the same queue). */
async function clusterShardsRebuilt(): Promise<number> {
  const text = await (await fetch(endpoints.metrics.blockserver)).text();
  return Number(/^satchel_blockserver_shards_rebuilt_total (\S+)$/m.exec(text)?.[1] ?? NaN);
}

/** A shard I/O layer whose shard writes wait at a gate the test opens. */
class GatedShardIO extends ShardIO {
  private open!: () => void;
  private readonly opened = new Promise<void>((r) => (this.open = r));
  /** Resolves once a write has reached the gate. */
  readonly reached: Promise<void>;
  private reach!: () => void;

  constructor(nodeSet: NodeSet, metrics: BlockserverMetrics) {
    super(nodeSet, metrics, 1000);
    this.reached = new Promise<void>((r) => (this.reach = r));
  }

  release(): void {
    this.open();
  }

  override async writeShard(block: ShardedBlock, i: number, payload: Uint8Array, node: string, state?: "ok" | "rebuilt") {
    this.reach();
    await this.opened;
    return super.writeShard(block, i, payload, node, state);
  }
}

function repairerOn(shards: ShardIO, metrics: BlockserverMetrics, holder: string): Repairer {
  return new Repairer(shards, new ErasureCodec(4, 2), index, metrics, logger, holder);
}

/** A stored block with one shard object removed behind the index's back (the index still says ok), queued for repair. */
async function damagedBlock(): Promise<{ hash: Buffer; shard: { shard_index: number; node: string } }> {
  const data = randomBytes(400_000);
  const hash = sha(data);
  await blocks.putBlock({ hash, data });
  const shard = (await shardRows(hash))[2];
  await s3(shard.node).client.removeObject(s3(shard.node).bucket, shardKey(hash, shard.shard_index));
  await index.queueRepair([hash], "test: a shard removed");
  return { hash, shard };
}

beforeAll(async () => {
  const transport = createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken });
  blocks = createClient(BlockService, transport);
  admin = createClient(BlockAdminService, transport);
  const ca = caOf(endpoints);
  indexShards = await ShardPools.open(endpoints.blockIndexUrl, { shardConnections: 2, tls: ca && { ca }, mapTable: "index_shards" });
  index = await BlockIndex.open(endpoints.blockIndexUrl, ca && { ca });
  nodes = new NodeSet(endpoints.storageNodes, 10_000, ca);
});
afterAll(async () => {
  nodes?.stop();
  await index?.close();
  await indexShards?.close();
});

describe("repair with claims: one repairer at a time per block", () => {
  it("two repairers draining the same queue at once rebuild a damaged shard once, not twice", async () => {
    const { hash, shard } = await damagedBlock();
    const before = await clusterShardsRebuilt();
    const [ma, mb] = [new BlockserverMetrics(), new BlockserverMetrics()];
    const a = repairerOn(new ShardIO(nodes, ma, 1000), ma, "test-a");
    const b = repairerOn(new ShardIO(nodes, mb, 1000), mb, "test-b");
    await Promise.all([a.kick(), b.kick()]);
    await eventually("the queue entry to be finished", async () => (await queueRows(hash)).length === 0);
    const rebuilt = async (m: BlockserverMetrics) => (await m.shardsRebuilt.get()).values[0]?.value ?? 0;
    const total = (await rebuilt(ma)) + (await rebuilt(mb)) + ((await clusterShardsRebuilt()) - before);
    expect(total).toBe(1);
    expect(await shardIsSound(hash, shard.shard_index, shard.node)).toBe(true);
  });

  it("a finding queued while a repair is under way survives that repair's finish", async () => {
    const { hash } = await damagedBlock();
    const metrics = new BlockserverMetrics();
    const gated = new GatedShardIO(nodes, metrics);
    const repairer = repairerOn(gated, metrics, "test-gated");
    const draining = repairer.kick();
    await gated.reached;
    // A read (or the scrubber) finds new damage while the repair holds the block.
    await index.queueRepair([hash], "test: a finding during the repair");
    gated.release();
    await draining;
    // The repair finished what it had seen; the later finding still waits in the queue.
    const rows = await queueRows(hash);
    expect(rows).toHaveLength(1);
    expect(rows[0].claimed_by).toBeNull();
  });

  it("a repairer whose claim was taken over records nothing and finishes nothing", async () => {
    const { hash, shard } = await damagedBlock();
    const [ma, mb] = [new BlockserverMetrics(), new BlockserverMetrics()];
    const gated = new GatedShardIO(nodes, ma);
    const slow = repairerOn(gated, ma, "test-slow");
    const draining = slow.kick();
    await gated.reached;
    const [held] = await queueRows(hash);
    expect(held.claimed_by).toBe("test-slow");
    // The slow repairer hangs (its heartbeat stops) and its lease runs out; another takes the block
    // over and repairs it.
    slow.stop();
    await onIndexShard(hash, "UPDATE repair_queue SET claim_until = NOW(3) - INTERVAL 1 SECOND WHERE hash = ?", [hash]);
    const fresh = repairerOn(new ShardIO(nodes, mb, 1000), mb, "test-fresh");
    await fresh.kick();
    expect((await mb.shardsRebuilt.get()).values[0]?.value).toBe(1);
    // A new finding queues the block again (a new entry: the last one was finished), and a third
    // repairer claims it. Its generation is not one the slow repairer could hold, though the entry is new.
    await index.queueRepair([hash], "test: a later finding");
    const third = await index.claimRepair(hash, "test-third", 60);
    expect(third).toBeDefined();
    expect(third!.generation).not.toBe(Number(held.claim_generation));
    // The slow one wakes: its shard write lands (same bytes), but it records nothing and does not
    // finish the entry the third repairer holds.
    gated.release();
    await draining;
    expect((await ma.shardsRebuilt.get()).values[0]?.value ?? 0).toBe(0);
    expect((await ma.repairClaimsLost.get()).values[0]?.value).toBe(1);
    const rows = await queueRows(hash);
    expect(rows).toHaveLength(1);
    expect(rows[0].claimed_by).toBe("test-third");
    expect(await shardIsSound(hash, shard.shard_index, shard.node)).toBe(true);
    await index.finishRepair(third!);
  });
});

describe("writes that never finished", () => {
  const record = (hash: Buffer) => ({ hash, size: 1000, dataShards: 4, parityShards: 2, shardSize: 256 });

  it("a block left in 'writing' is swept after the bound, and the orphan sweep then removes its shard objects", async () => {
    // A write that died after one shard landed: its row stays 'writing', its object is on a node.
    const data = randomBytes(1000);
    const hash = sha(data);
    await index.beginWrite(record(hash));
    const shards = new ShardIO(nodes, new BlockserverMetrics(), 1000);
    const target = endpoints.storageNodes[0].name;
    const { error } = await shards.writeShard(record(hash), 0, randomBytes(256), target);
    expect(error).toBeUndefined();
    await admin.runGarbageCollection({ graceSeconds: 3600, sweepOrphans: true, orphanMinAgeSeconds: 0 });
    expect(await onIndexShard(hash, "SELECT state FROM blocks WHERE hash = ?", [hash])).toHaveLength(0);
    expect(await shardIsSound(hash, 0, target)).toBe(false);
  });

  it("a write younger than the bound is left alone, and one that outlived it does not commit a block the sweep removed", async () => {
    const hash = sha(randomBytes(1000));
    await index.beginWrite(record(hash));
    const shard = ((hash[0] << 8) | hash[1]) % index.shardCount;
    await index.sweepStaleWrites(shard, 3600, 1000);
    expect(await onIndexShard(hash, "SELECT state FROM blocks WHERE hash = ?", [hash])).toEqual([{ state: "writing" }]);
    await new Promise((r) => setTimeout(r, 20));
    await index.sweepStaleWrites(shard, 0, 1000);
    expect(await onIndexShard(hash, "SELECT state FROM blocks WHERE hash = ?", [hash])).toHaveLength(0);
    const placements = [0, 1, 2, 3, 4, 5].map((i) => ({ index: i, node: endpoints.storageNodes[i].name, checksum: 1, state: "ok" as const }));
    expect(await index.commitWrite(hash, placements)).toBe(false);
    expect(await shardRows(hash)).toHaveLength(0);
  });
});

describe("a block recorded lost", () => {
  it("is missing to HasBlocks, and an upload of its bytes rewrites every shard and clears the mark", async () => {
    const data = randomBytes(700_000);
    const hash = sha(data);
    await blocks.putBlock({ hash, data });
    const rows = await shardRows(hash);
    for (const r of rows.slice(0, 3)) await s3(r.node).client.removeObject(s3(r.node).bucket, shardKey(hash, r.shard_index));
    await blocks.getBlock({ hash }).catch(() => undefined); // DATA_LOSS, and queued for repair
    await eventually("repair to record the block lost", async () =>
      (await onIndexShard(hash, "SELECT lost_at FROM blocks WHERE hash = ?", [hash]))[0].lost_at !== null);
    // A shard the index still records as stored has gone too, unseen.
    const unseen = rows[4];
    await s3(unseen.node).client.removeObject(s3(unseen.node).bucket, shardKey(hash, unseen.shard_index));

    expect((await blocks.hasBlocks({ hashes: [hash] })).present).toEqual([false]);
    // Nor can a commit reserve it: a new version must not point at bytes that are gone.
    expect((await blocks.reserveBlocks({ hashes: [hash] })).present).toEqual([false]);
    await blocks.putBlock({ hash, data });
    for (const r of rows) expect(await shardIsSound(hash, r.shard_index, r.node)).toBe(true);
    expect((await onIndexShard(hash, "SELECT lost_at FROM blocks WHERE hash = ?", [hash]))[0].lost_at).toBeNull();
    expect((await shardRows(hash)).every((r) => r.state === "ok")).toBe(true);
    expect((await blocks.hasBlocks({ hashes: [hash] })).present).toEqual([true]);
    expect((await blocks.reserveBlocks({ hashes: [hash] })).present).toEqual([true]);
    expect(Buffer.from((await blocks.getBlock({ hash })).data).equals(data)).toBe(true);
  });
});
