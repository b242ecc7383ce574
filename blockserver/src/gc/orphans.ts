import type { Logger } from "@satchel/proto";
import type { RepairSink } from "../block-store.js";
import type { BlockIndex } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import type { NodeSet } from "../nodes/node-set.js";

const KEY = /^blocks\/[0-9a-f]{2}\/([0-9a-f]{64})\.(\d+)$/;

/**
 * Finds shard objects on storage nodes that the index does not place there (a write that died
 * before it was recorded, a shard moved off a node that was dead, a collected block whose node was
 * down) and removes them. Objects younger than minAgeSeconds are left alone: they may belong to a
 * write still in flight.
 */
export async function sweepOrphans(
  nodes: NodeSet, index: BlockIndex, repairs: RepairSink, metrics: BlockserverMetrics, logger: Logger, minAgeSeconds: number,
): Promise<{ scanned: number; removed: number }> {
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
      const record = await index.get(hash);
      if (record?.state === "writing") continue;
      const placement = record?.shards.find((s) => s.index === Number(m[2]));
      if (placement?.node === name) continue;
      // The index puts this shard elsewhere but does not know it stored there: this copy may be the
      // only good one (a repair that wrote it and stopped before recording it). Repair adopts it.
      if (record?.state === "live" && placement && placement.state !== "ok" && placement.state !== "rebuilt") {
        repairs.enqueue(hash, `a copy of shard ${placement.index} found on ${name}`);
        continue;
      }
      await node.delete(key);
      removed++;
      metrics.orphanShardsRemoved.inc();
    }
  }
  if (removed > 0) logger.info({ scanned, removed }, "orphan shards removed");
  return { scanned, removed };
}
