import type { Logger } from "@satchel/proto";
import type { RepairSink } from "../block-store.js";
import { isStored, type BlockIndex, type BlockRecord } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import type { NodeSet } from "../nodes/node-set.js";
import { sweepStaleWrites } from "./stale-writes.js";

const KEY = /^blocks\/[0-9a-f]{2}\/([0-9a-f]{64})\.(\d+)$/;

/** What the orphan sweep does with a shard object, given what the index says about its block. */
export type OrphanVerdict = "keep" | "adopt" | "delete";

/**
 * - keep: the index places the shard on this node, or the block is still being written;
 * - adopt: the index puts the shard elsewhere but does not know it stored there, so this copy may
 *   be the only good one (a repair that wrote it and stopped before recording it): repair adopts it;
 * - delete: nothing in the index needs it.
 */
export function orphanVerdict(record: BlockRecord | undefined, index: number, node: string): OrphanVerdict {
  if (record?.state === "writing") return "keep";
  const placement = record?.shards.find((s) => s.index === index);
  if (placement?.node === node) return "keep";
  if (record?.state === "live" && placement && !isStored(placement.state)) return "adopt";
  return "delete";
}

/**
 * Finds shard objects on storage nodes that the index does not place there (a write that died
 * before it was recorded, a shard moved off a node that was dead, a collected block whose node was
 * down) and removes them. Objects younger than minAgeSeconds are left alone: they may belong to a
 * write still in flight. Writes older than that which never finished are swept from the index
 * first, so their objects go too.
 */
export async function sweepOrphans(
  nodes: NodeSet, index: BlockIndex, repairs: RepairSink, metrics: BlockserverMetrics, logger: Logger, minAgeSeconds: number,
): Promise<{ scanned: number; removed: number }> {
  await sweepStaleWrites(index, metrics, logger, minAgeSeconds);
  let scanned = 0;
  let removed = 0;
  const cutoff = Date.now() - minAgeSeconds * 1000;
  for (const name of nodes.healthyNames()) {
    const node = nodes.get(name)!;
    for (const { key, modified } of await node.list("blocks/")) {
      scanned++;
      const m = KEY.exec(key);
      if (!m || modified.getTime() > cutoff) continue;
      const hash = Buffer.from(m[1], "hex");
      const shard = Number(m[2]);
      const verdict = orphanVerdict(await index.get(hash), shard, name);
      if (verdict === "keep") continue;
      if (verdict === "adopt") {
        repairs.enqueue(hash, `a copy of shard ${shard} found on ${name}`);
        continue;
      }
      // The listing may be minutes old: a write or repair may have recorded this very object since.
      // Look again just before deleting, so the window is one index read, not a whole listing.
      if (orphanVerdict(await index.get(hash), shard, name) !== "delete") continue;
      await node.delete(key);
      removed++;
      metrics.orphanShardsRemoved.inc();
    }
  }
  if (removed > 0) logger.info({ scanned, removed }, "orphan shards removed");
  return { scanned, removed };
}
