import type { Logger } from "@satchel/proto";
import type { BlockIndex } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import type { NodeSet } from "../nodes/node-set.js";

/**
 * The redundancy gauges alerts watch: live blocks lacking shards on usable nodes (degraded) and
 * those down to k or fewer (at risk), measured on a timer. Returns what stops it.
 */
export function measureRedundancy(
  nodes: NodeSet, index: Pick<BlockIndex, "redundancy">, metrics: Pick<BlockserverMetrics, "blocksDegraded" | "blocksAtRisk">, logger: Logger,
  shards: { data: number; parity: number }, intervalMs: number,
): () => void {
  const measure = async () => {
    const usable = nodes.healthyNames().filter((n) => !nodes.isDead(n));
    const r = await index.redundancy(usable, shards.data + shards.parity, shards.data);
    metrics.blocksDegraded.set(r.degraded);
    metrics.blocksAtRisk.set(r.atRisk);
  };
  const timer = setInterval(() => void measure().catch((err: Error) => logger.debug({ err: err.message }, "redundancy check failed")), intervalMs);
  timer.unref();
  void measure().catch(() => undefined);
  return () => clearInterval(timer);
}
