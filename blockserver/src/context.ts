import { createLogger, type Logger } from "@satchel/proto";
import { BlockStore } from "./block-store.js";
import type { BlockserverConfig } from "./config.js";
import { BlockIndex } from "./block-index/block-index.js";
import { BlockserverMetrics } from "./metrics.js";
import { NodeSet } from "./nodes/node-set.js";
import { Repairer } from "./repair/repairer.js";
import { Scrubber } from "./scrub/scrubber.js";
import { Collector } from "./gc/collector.js";

/** Every long-lived client and worker of the blockserver, built once; close() releases them. */
export interface BlockserverContext {
  config: BlockserverConfig;
  logger: Logger;
  metrics: BlockserverMetrics;
  index: BlockIndex;
  nodes: NodeSet;
  store: BlockStore;
  repairer: Repairer;
  scrubber: Scrubber;
  collector: Collector;
  /** Re-reads which storage nodes an operator declared dead. */
  refreshNodeStates(): Promise<void>;
  close(): Promise<void>;
}

export async function createContext(config: BlockserverConfig): Promise<BlockserverContext> {
  const logger = createLogger("blockserver", config.logLevel);
  const metrics = new BlockserverMetrics();
  const index = await BlockIndex.open(config.directoryUrl);
  const nodes = new NodeSet(config.storageNodes, config.nodeTimeoutMs);
  const store = new BlockStore(config, index, nodes, metrics);
  const repairer = new Repairer(store, index, metrics, logger);
  store.repairs = repairer;
  for (const name of nodes.names) metrics.nodeUp.set({ node: name }, 1);
  // Labelled counters start at zero, so dashboards and alerts see 0 rather than no data.
  for (const name of nodes.names) for (const operation of ["write", "read"]) metrics.shardFailures.inc({ node: name, operation }, 0);
  for (const kind of ["corrupt", "missing", "unreachable", "dead_node"]) metrics.scrubFindings.inc({ kind }, 0);
  for (const result of ["repaired", "partial", "unavailable", "lost"]) metrics.repairs.inc({ result }, 0);
  const probesDone = nodes.startProbing(config.probeIntervalMs, (node, result, changed) => {
    metrics.nodeUp.set({ node: node.name }, node.healthy ? 1 : 0);
    const recovery = (work: Promise<void>) => void work.catch((err: Error) => logger.warn({ node: node.name, err: err.message }, "could not queue the node's shards for re-checking"));
    // A new disk: every shard recorded on the node is checked and rebuilt there, no operator needed.
    if (result === "new-disk") recovery(repairer.diskReplaced(node.name, () => node.adoptDisk(), 2 * config.nodeTimeoutMs));
    if (!changed) return;
    logger.warn({ node: node.name }, node.healthy ? "storage node is back" : "storage node is down");
    // Shards written while it was down, or recorded unreachable, are re-checked and sent home.
    if (node.healthy) recovery(repairer.nodeBack(node.name));
  });
  // Redundancy gauges for alerting: how many live blocks lack shards on usable nodes.
  const measureRedundancy = async () => {
    const usable = nodes.healthyNames().filter((n) => !nodes.isDead(n));
    const r = await index.redundancy(usable, config.dataShards + config.parityShards, config.dataShards);
    metrics.blocksDegraded.set(r.degraded);
    metrics.blocksAtRisk.set(r.atRisk);
  };
  const redundancyTimer = setInterval(() => void measureRedundancy().catch((err: Error) => logger.debug({ err: err.message }, "redundancy check failed")), 15_000);
  redundancyTimer.unref();
  void measureRedundancy().catch(() => undefined);
  const refreshNodeStates = async () => nodes.setDead(await index.deadNodes());
  await refreshNodeStates();
  const nodeStateTimer = setInterval(() => void refreshNodeStates().catch(() => undefined), 5000);
  nodeStateTimer.unref();
  await probesDone;
  repairer.start(config.repairSweepMs);
  const scrubber = new Scrubber(store, index, repairer, metrics, logger, config.scrub);
  scrubber.start();
  const collector = new Collector(store, index, metrics, logger, config.gc.graceSeconds);
  collector.start(config.gc.intervalMs);
  return {
    config, logger, metrics, index, nodes, store, repairer, scrubber, collector, refreshNodeStates,
    close: async () => {
      collector.stop();
      clearInterval(nodeStateTimer);
      clearInterval(redundancyTimer);
      scrubber.stop();
      nodes.stop();
      repairer.stop();
      await index.close();
    },
  };
}
