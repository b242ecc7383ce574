import { describe, expect, it, vi } from "vitest";
import { createLogger } from "@satchel/proto";
import type { BlockIndex, BlockRecord } from "../block-index/block-index.js";
import type { RepairSink } from "../block-store.js";
import { BlockserverMetrics } from "../metrics.js";
import type { NodeSet } from "../nodes/node-set.js";
import { sweepOrphans } from "./orphans.js";

const hash = Buffer.alloc(32, 0xab);
const key = `blocks/ab/${hash.toString("hex")}.3`;
const old = new Date(Date.now() - 7200_000);

function oneNode(deleted: string[]): NodeSet {
  const node = {
    name: "n0",
    list: async () => [{ key, modified: old }],
    delete: vi.fn(async (k: string) => void deleted.push(k)),
  };
  return { healthyNames: () => ["n0"], get: () => node } as unknown as NodeSet;
}

const recorded: BlockRecord = {
  hash, size: 1000, dataShards: 4, parityShards: 2, shardSize: 256, state: "live",
  shards: [0, 1, 2, 3, 4, 5].map((index) => ({ index, node: `n${index === 3 ? 0 : index + 10}`, checksum: 1, state: "ok" })),
};

const repairs: RepairSink = { enqueue: () => undefined, restore: async () => undefined };
const logger = createLogger("orphans-spec", "silent");

describe("the orphan sweep", () => {
  it("removes a shard object that no index entry places on its node", async () => {
    const deleted: string[] = [];
    const index = { get: async () => undefined, shardCount: 0 } as unknown as BlockIndex;
    await sweepOrphans(oneNode(deleted), index, repairs, new BlockserverMetrics(), logger, 3600);
    expect(deleted).toEqual([key]);
  });

  it("keeps an object that a write or repair recorded between the first look and the delete", async () => {
    const deleted: string[] = [];
    // The first look finds no entry; by the time of the delete, a repair has recorded the shard there.
    let looks = 0;
    const index = { get: async () => (looks++ === 0 ? undefined : recorded), shardCount: 0 } as unknown as BlockIndex;
    await sweepOrphans(oneNode(deleted), index, repairs, new BlockserverMetrics(), logger, 3600);
    expect(deleted).toEqual([]);
  });
});
