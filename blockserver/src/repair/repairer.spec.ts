import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it, vi } from "vitest";
import { createLogger } from "@satchel/proto";
import type { BlockIndex, BlockRecord, ShardPlacement } from "../block-index/block-index.js";
import { ErasureCodec } from "../codec/erasure.js";
import { BlockserverMetrics } from "../metrics.js";
import type { ShardIO, ShardSurvey } from "../shard-io/shard-io.js";
import { Repairer } from "./repairer.js";

const NODES = ["n0", "n1", "n2", "n3", "n4", "n5"];
const codec = new ErasureCodec(4, 2);

/** Six healthy nodes; shard writes succeed and are remembered. */
function fakeShards() {
  const written: number[] = [];
  const nodes = {
    names: NODES,
    get: (name: string) => ({ name, healthy: true }),
    isDead: () => false,
    healthyNames: () => NODES,
  };
  const writeShard = vi.fn(async (_block: unknown, index: number, _payload: Uint8Array, node: string, state: ShardPlacement["state"] = "ok") => {
    written.push(index);
    return { placement: { index, node, checksum: 1, state } };
  });
  return { io: { nodes, writeShard } as unknown as ShardIO, written };
}

/** An index in memory in which every claim is granted and held. */
function fakeIndex(): BlockIndex {
  const ok = async () => true;
  const none = async () => undefined;
  return {
    claimRepair: async (hash: Buffer, holder: string) => ({ hash, generation: 1, holder }),
    claimRepairNow: async (hash: Buffer, holder: string) => ({ hash, generation: 1, holder }),
    renewRepairClaim: ok, recordRepairedShard: ok, setShard: none,
    markVerified: none, markLost: none, clearLost: none, finishRepair: none, retryRepair: none, queueRepair: none,
  } as unknown as BlockIndex;
}

async function damagedBlock(): Promise<{ record: BlockRecord; survey: ShardSurvey[] }> {
  const data = randomBytes(100_000);
  const hash = createHash("sha256").update(data).digest();
  const shards = await codec.encode(data);
  const record: BlockRecord = {
    hash, size: data.length, dataShards: 4, parityShards: 2, shardSize: shards[0].length, state: "live",
    shards: NODES.map((node, index) => ({ index, node, checksum: 1, state: "ok" })),
  };
  // Shard 5 is absent on its node; the others passed their checksums.
  const survey: ShardSurvey[] = shards.map((payload, index) => (index === 5
    ? { index, node: NODES[index], status: "gone", problem: "absent", tried: true, detail: "absent" }
    : { index, node: NODES[index], status: "ok", payload: Buffer.from(payload), tried: true, detail: "ok" }));
  return { record, survey };
}

const claim = (record: BlockRecord) => ({ hash: record.hash, generation: 1, holder: "spec" });
const repairerWith = (io: ShardIO, metrics = new BlockserverMetrics()) =>
  new Repairer(io, codec, fakeIndex(), metrics, createLogger("repairer-spec", "silent"), "spec");

describe("a rebuilt shard is checked against the block hash before it is written", () => {
  it("a shard rebuilt from good shards is written", async () => {
    const { record, survey } = await damagedBlock();
    const { io, written } = fakeShards();
    const result = await repairerWith(io).rebuild(record, survey, claim(record));
    expect(written).toEqual([5]);
    expect(result.complete).toBe(true);
  });

  it("a shard rebuilt from a shard that passed its checksum but holds wrong bytes is never written", async () => {
    const { record, survey } = await damagedBlock();
    // Wrong bytes under a matching checksum: written wrong, or rotted before the checksum was taken.
    survey[1].payload![10] ^= 0x01;
    const { io, written } = fakeShards();
    const metrics = new BlockserverMetrics();
    const result = await repairerWith(io, metrics).rebuild(record, survey, claim(record));
    expect(written).toEqual([]);
    expect(result.complete).toBe(false);
    expect((await metrics.rebuildsRejected.get()).values[0]?.value).toBe(1);
  });
});
