import type { Logger } from "@satchel/proto";
import type { BlockIndex } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";

const BATCH = 1000;

/**
 * Removes the index rows of writes that died (a blockserver killed mid-write, a write below its
 * quorum): blocks still in 'writing' whose write began more than `maxAgeSeconds` ago. Each row is
 * removed under the same condition, re-read in the delete itself, so a write that began again
 * meanwhile keeps its row; a write that outlives the bound finds its row gone and fails rather than
 * committing (commitWrite). The shard objects such a write left are orphans from then on: the
 * orphan sweep removes them (it leaves alone every object of a block still in 'writing').
 */
export async function sweepStaleWrites(index: BlockIndex, metrics: BlockserverMetrics, logger: Logger, maxAgeSeconds: number): Promise<number> {
  let swept = 0;
  for (let shard = 0; shard < index.shardCount; shard++) {
    for (;;) {
      const n = await index.sweepStaleWrites(shard, maxAgeSeconds, BATCH);
      swept += n;
      if (n < BATCH) break;
    }
  }
  metrics.staleWritesSwept.inc(swept);
  if (swept > 0) logger.info({ blocks: swept, maxAgeSeconds }, "abandoned writes swept from the block index");
  return swept;
}
