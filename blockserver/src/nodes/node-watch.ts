import type { Logger } from "@satchel/proto";
import type { BlockIndex } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import type { Repairer } from "../repair/repairer.js";
import type { NodeSet } from "./node-set.js";

/**
 * Probes the storage nodes and acts on what the probes see: the node gauge, and recovery without
 * an operator (a node back: its shards are re-checked and sent home; a new disk: every shard
 * recorded on it is rebuilt there). Resolves once every node has been probed once.
 */
export function watchNodes(
  nodes: NodeSet, repairer: Pick<Repairer, "diskReplaced" | "nodeBack">, metrics: Pick<BlockserverMetrics, "nodeUp">, logger: Logger,
  opts: { probeIntervalMs: number; nodeTimeoutMs: number },
): Promise<void> {
  return nodes.startProbing(opts.probeIntervalMs, (node, result, changed) => {
    metrics.nodeUp.set({ node: node.name }, node.healthy ? 1 : 0);
    const recovery = (work: Promise<void>) => void work.catch((err: Error) => logger.warn({ node: node.name, err: err.message }, "could not queue the node's shards for re-checking"));
    if (result === "new-disk") recovery(repairer.diskReplaced(node.name, () => node.adoptDisk(), 2 * opts.nodeTimeoutMs));
    if (!changed) return;
    logger.warn({ node: node.name }, node.healthy ? "storage node is back" : "storage node is down");
    if (node.healthy) recovery(repairer.nodeBack(node.name));
  });
}

/** Keeps the nodes' record of which ones an operator declared dead current (read from the index). */
export async function followDeadNodes(nodes: NodeSet, index: Pick<BlockIndex, "deadNodes">, intervalMs: number): Promise<{ refresh(): Promise<void>; stop(): void }> {
  const refresh = async () => nodes.setDead(await index.deadNodes());
  await refresh();
  const timer = setInterval(() => void refresh().catch(() => undefined), intervalMs);
  timer.unref();
  return { refresh, stop: () => clearInterval(timer) };
}
