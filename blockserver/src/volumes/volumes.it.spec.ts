import { createHash, randomBytes } from "node:crypto";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import type { RowDataPacket } from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport, indexShardOf, ShardPools } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { NodeControl, ServiceProcesses, caOf, createAccount, eventually, minioClient, signIn } from "@satchel/ops";
import { segmentKey } from "./volume-store.js";

const { endpoints, stateDir } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();

/** A blockserver beside the cluster's that packs blocks below 64 KiB into volumes. */
const extra = new ServiceProcesses("blockserver", endpoints, stateDir);
const nodes = new NodeControl(stateDir, endpoints);
let packing: Client<typeof BlockService>;
let packingAdmin: Client<typeof BlockAdminService>;
let plain: Client<typeof BlockService>;
let indexShards: ShardPools;

beforeAll(async () => {
  const proc = await extra.start("blockserver-packing", 120, { SATCHEL_PACK_BELOW_BYTES: String(64 * 1024), SATCHEL_VOLUME_WINDOW_MS: "5" });
  const transport = createSatchelTransport({ baseUrl: proc.url, token: endpoints.serviceToken });
  packing = createClient(BlockService, transport);
  packingAdmin = createClient(BlockAdminService, transport);
  plain = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken }));
  const ca = caOf(endpoints);
  indexShards = await ShardPools.open(endpoints.blockIndexUrl, { shardConnections: 2, tls: ca && { ca }, mapTable: "index_shards" });
}, 60_000);
afterAll(async () => {
  await extra.stopAll();
  await indexShards?.close();
});

/** A block's index row and how many shard rows it has. */
async function rowOf(hash: Buffer): Promise<{ volumeId: number | null; offset: number | null; shards: number }> {
  const pool = indexShards.shards[indexShardOf(hash, indexShards.shards.length)];
  const [rows] = await pool.query<RowDataPacket[]>("SELECT volume_id, volume_offset, (SELECT COUNT(*) FROM block_shards s WHERE s.hash = b.hash) AS shards FROM blocks b WHERE hash = ?", [hash]);
  return { volumeId: rows[0].volume_id === null ? null : Number(rows[0].volume_id), offset: rows[0].volume_offset === null ? null : Number(rows[0].volume_offset), shards: Number(rows[0].shards) };
}

/** Objects under a prefix across every storage node. */
async function objectsUnder(prefix: string): Promise<Map<string, string[]>> {
  const byNode = new Map<string, string[]>();
  for (const n of endpoints.storageNodes) {
    const keys: string[] = [];
    for await (const o of minioClient(n).listObjectsV2(n.bucket, prefix, true)) keys.push((o as { name: string }).name);
    byNode.set(n.name, keys);
  }
  return byNode;
}

async function segmentOf(volumeId: number, offset: number): Promise<{ start: number; missing: string }> {
  const [rows] = await indexShards.directory.query<RowDataPacket[]>(
    "SELECT start, missing FROM volume_segments WHERE volume_id = ? AND start <= ? ORDER BY start DESC LIMIT 1", [volumeId, offset],
  );
  return { start: Number(rows[0].start), missing: String(rows[0].missing) };
}

/** The copies of the segment holding a packed block: its object key, and the volume's replicas. */
async function copiesOf(hash: Buffer): Promise<{ key: string; replicas: string[]; volumeId: number; start: number }> {
  const { volumeId, offset } = await rowOf(hash);
  const { start } = await segmentOf(volumeId!, offset!);
  const [rows] = await indexShards.directory.query<RowDataPacket[]>("SELECT replicas FROM volumes WHERE volume_id = ?", [volumeId]);
  return { key: segmentKey(volumeId!, start), replicas: String(rows[0].replicas).split(","), volumeId: volumeId!, start };
}

const s3 = (name: string) => {
  const n = endpoints.storageNodes.find((x) => x.name === name)!;
  return { client: minioClient(n), bucket: n.bucket };
};

async function objectBytes(node: string, key: string): Promise<Buffer | undefined> {
  const { client, bucket } = s3(node);
  try {
    const parts: Buffer[] = [];
    for await (const c of await client.getObject(bucket, key)) parts.push(c as Buffer);
    return Buffer.concat(parts);
  } catch {
    return undefined;
  }
}

describe("small blocks packed into replicated open volumes", () => {
  it("blocks arriving together share segments written as three copies; every blockserver reads them back byte-identical; a large block is still erasure-coded", async () => {
    const blocks = Array.from({ length: 300 }, (_, i) => randomBytes(1024 + (i % 8) * 1000));
    const before = await objectsUnder("volumes/");
    const results = await Promise.all(blocks.map((data) => packing.putBlock({ hash: sha(data), data })));
    expect(results.every((r) => r.alreadyStored === false)).toBe(true);
    // Sent again: already stored.
    expect((await packing.putBlock({ hash: sha(blocks[0]), data: blocks[0] })).alreadyStored).toBe(true);

    const rows = await Promise.all(blocks.map((data) => rowOf(sha(data))));
    expect(rows.every((r) => r.volumeId !== null && r.shards === 0)).toBe(true);
    const after = await objectsUnder("volumes/");
    const added = [...after.values()].flat().length - [...before.values()].flat().length;
    // Far fewer objects than blocks: three copies of each of a few segments (not six shards of each block).
    expect(added).toBeGreaterThan(0);
    expect(added % 3).toBe(0);
    expect(added).toBeLessThan(blocks.length / 5);
    // Each segment's three copies are on three distinct nodes.
    const holders = new Map<string, number>();
    for (const keys of after.values()) for (const k of keys) holders.set(k, (holders.get(k) ?? 0) + 1);
    expect([...holders.values()].every((n) => n === 3)).toBe(true);

    for (const [i, data] of blocks.entries()) {
      const via = i % 2 ? packing : plain;
      expect(Buffer.from((await via.getBlock({ hash: sha(data) })).data).equals(data)).toBe(true);
    }
    const inspected = await packingAdmin.inspectBlocks({ hashes: blocks.slice(0, 5).map(sha), unthrottled: true });
    expect(inspected.blocks.map((b) => [b.found, b.readable, b.lost])).toEqual(Array(5).fill([true, true, false]));

    const large = randomBytes(128 * 1024);
    await packing.putBlock({ hash: sha(large), data: large });
    expect(await rowOf(sha(large))).toMatchObject({ volumeId: null, shards: 6 });
    expect(Buffer.from((await plain.getBlock({ hash: sha(large) })).data).equals(large)).toBe(true);
  });

  it("with one copy's node down a segment is stored on the other two, recorded as missing there, and reads back; another user cannot read a packed block without a grant", async () => {
    const first = randomBytes(2000);
    await packing.putBlock({ hash: sha(first), data: first });
    const { volumeId } = await rowOf(sha(first));
    const [vol] = (await indexShards.directory.query<RowDataPacket[]>("SELECT replicas FROM volumes WHERE volume_id = ?", [volumeId]))[0];
    const down = String(vol.replicas).split(",")[0];
    const downIndex = endpoints.storageNodes.findIndex((n) => n.name === down);
    await nodes.kill(downIndex);
    try {
      const more = Array.from({ length: 20 }, () => randomBytes(3000));
      await Promise.all(more.map((data) => packing.putBlock({ hash: sha(data), data })));
      for (const data of more) {
        const r = await rowOf(sha(data));
        expect(r.volumeId).toBe(volumeId);
        expect((await segmentOf(volumeId!, r.offset!)).missing).toBe(down);
        expect(Buffer.from((await packing.getBlock({ hash: sha(data) })).data).equals(data)).toBe(true);
      }
    } finally {
      await nodes.start(downIndex);
    }
    const stranger = await createAccount(endpoints, "packed-stranger");
    const theirs = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: await signIn(endpoints, stranger, "probe") }));
    const err = await theirs.getBlock({ hash: sha(first) }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect([Code.PermissionDenied, Code.NotFound]).toContain(err?.code);
  });

  it("a copy removed is noticed by a read and restored from another; a copy damaged is found by the scrub and restored; the block reads back throughout", async () => {
    const data = randomBytes(5000);
    const hash = sha(data);
    await packing.putBlock({ hash, data });
    const { key, replicas, volumeId, start } = await copiesOf(hash);
    const original = await objectBytes(replicas[0], key);
    expect(original).toBeDefined();

    // Removed from every copy but one... no: from the first copy, which reads try first when healthy.
    await s3(replicas[0]).client.removeObject(s3(replicas[0]).bucket, key);
    expect(Buffer.from((await packing.getBlock({ hash })).data).equals(data)).toBe(true);
    await eventually("the read's finding to be repaired", async () => (await objectBytes(replicas[0], key))?.equals(original!) === true, 30_000);
    expect((await segmentOf(volumeId, start)).missing).toBe("");

    // Damaged in place on another copy: a bit flipped in the middle of the segment.
    const damaged = Buffer.from(original!);
    damaged[Math.floor(damaged.length / 2)] ^= 0x10;
    await s3(replicas[1]).client.putObject(s3(replicas[1]).bucket, key, damaged, damaged.length);
    await packingAdmin.runScrub({ wait: true, unthrottled: true });
    await eventually("the scrub's finding to be repaired", async () => (await objectBytes(replicas[1], key))?.equals(original!) === true, 30_000);
    expect((await segmentOf(volumeId, start)).missing).toBe("");
    expect(Buffer.from((await plain.getBlock({ hash })).data).equals(data)).toBe(true);

    // Every copy gone: the read proves the block gone (DATA_LOSS), naming it.
    for (const r of replicas) await s3(r).client.removeObject(s3(r).bucket, key);
    const err = await packing.getBlock({ hash }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.DataLoss);
    expect(err?.rawMessage).toContain(hash.toString("hex"));
  });

  it("collecting an unreferenced packed block leaves its neighbours in the segment readable, and the volume's live bytes stay the records blocks point at", async () => {
    const [loose, neighbour] = [randomBytes(3000), randomBytes(3000)];
    await Promise.all([loose, neighbour].map((data) => packing.putBlock({ hash: sha(data), data })));
    const { volumeId } = await rowOf(sha(loose));
    const live = async () => {
      const [rows] = await indexShards.directory.query<RowDataPacket[]>("SELECT live_bytes FROM volumes WHERE volume_id = ?", [volumeId]);
      return Number(rows[0].live_bytes);
    };
    const before = await live();
    // The neighbour is kept by a reservation (as a block about to be committed is).
    expect((await packing.reserveBlocks({ hashes: [sha(neighbour)] })).present).toEqual([true]);
    await eventually("the loose block to be collected", async () => {
      await packingAdmin.runGarbageCollection({ graceSeconds: 0 });
      return !(await packingAdmin.getReferenceCounts({ hashes: [sha(loose)] })).counts[0].found;
    });
    // Everything unreferenced went (earlier tests' blocks too): what the volume counts as live is
    // exactly the records of the blocks the index still points into it.
    let pointedAt = 0;
    for (const pool of indexShards.shards) {
      const [rows] = await pool.query<RowDataPacket[]>("SELECT COALESCE(SUM(52 + size), 0) AS n FROM blocks WHERE volume_id = ?", [volumeId]);
      pointedAt += Number(rows[0].n);
    }
    expect(await live()).toBe(pointedAt);
    expect(await live()).toBeLessThanOrEqual(before - (52 + loose.length));
    expect(pointedAt).toBeGreaterThanOrEqual(52 + neighbour.length);
    expect(Buffer.from((await packing.getBlock({ hash: sha(neighbour) })).data).equals(neighbour)).toBe(true);
    expect(await packing.getBlock({ hash: sha(loose) }).then(() => undefined, (e: unknown) => ConnectError.from(e).code)).toBe(Code.NotFound);
  });
});
