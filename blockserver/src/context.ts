import { BlockGrants, createLogger, userRateLimits, type Logger, type RateClass, type SharedRateLimiter } from "@satchel/proto";
import { BlockStore } from "./block-store.js";
import { ErasureCodec } from "./codec/erasure.js";
import type { BlockserverConfig } from "./config.js";
import { BlockIndex } from "./block-index/block-index.js";
import { BlockserverMetrics } from "./metrics.js";
import { NodeSet } from "./nodes/node-set.js";
import { followDeadNodes, watchNodes } from "./nodes/node-watch.js";
import { measureRedundancy } from "./repair/redundancy-gauges.js";
import { Repairer } from "./repair/repairer.js";
import { Scrubber } from "./scrub/scrubber.js";
import { ShardIO } from "./shard-io/shard-io.js";
import { Collector } from "./gc/collector.js";
import { sweepStaleWrites } from "./gc/stale-writes.js";
import { VolumeRepairer } from "./volumes/volume-repair.js";
import { VolumeStore } from "./volumes/volume-store.js";

/** Every long-lived client and worker of the blockserver, built once; close() releases them. */
export interface BlockserverContext {
  config: BlockserverConfig;
  logger: Logger;
  metrics: BlockserverMetrics;
  index: BlockIndex;
  nodes: NodeSet;
  shards: ShardIO;
  store: BlockStore;
  /** Small blocks packed in volumes: written when SATCHEL_PACK_BELOW_BYTES is set, read always. */
  volumes: VolumeStore;
  volumeRepairer: VolumeRepairer;
  repairer: Repairer;
  scrubber: Scrubber;
  collector: Collector;
  /** Verifies users' block grants and issues them to uploaders. */
  grants: BlockGrants;
  /** Users' rate limits: admitted by the call pipeline, block bytes charged by the handlers. */
  limits: SharedRateLimiter<RateClass>;
  /** Re-reads which storage nodes an operator declared dead. */
  refreshNodeStates(): Promise<void>;
  close(): Promise<void>;
}

export async function createContext(config: BlockserverConfig): Promise<BlockserverContext> {
  const logger = createLogger("blockserver", config.logLevel);
  const metrics = new BlockserverMetrics();
  const index = await BlockIndex.open(config.blockIndexUrl, config.tls);
  const nodes = new NodeSet(config.storageNodes, config.nodeTimeoutMs, config.tls?.ca);
  const shards = new ShardIO(nodes, metrics, config.hedgeMs);
  const codec = new ErasureCodec(config.dataShards, config.parityShards);
  const repairer = new Repairer(shards, codec, index, metrics, logger);
  // Every blockserver reads packed blocks; only one with SATCHEL_PACK_BELOW_BYTES set packs new ones.
  const volumeRepairer = new VolumeRepairer(index, nodes, logger);
  const volumes = new VolumeStore(index, nodes, metrics, logger, { ...config.volumes, readTimeoutMs: config.nodeTimeoutMs }, volumeRepairer);
  volumeRepairer.start(config.repairSweepMs);
  const volumeScrub = config.volumes.scrubIntervalMs > 0
    ? setInterval(() => void volumeRepairer.scrubPass().catch((err: Error) => logger.warn({ err: err.message }, "volume scrub pass failed")), config.volumes.scrubIntervalMs).unref()
    : undefined;
  const store = new BlockStore(config, index, shards, codec, repairer, metrics, volumes);
  metrics.startAtZero(nodes.names);
  const probesDone = watchNodes(nodes, repairer, metrics, logger, config);
  const stopRedundancy = measureRedundancy(nodes, index, metrics, logger, { data: config.dataShards, parity: config.parityShards }, 15_000);
  const deadNodes = await followDeadNodes(nodes, index, 5000);
  await probesDone;
  repairer.start(config.repairSweepMs);
  const scrubber = new Scrubber(shards, store, index, repairer, metrics, logger, config.scrub);
  scrubber.start();
  const collector = new Collector(shards, index, metrics, logger, {
    graceSeconds: config.gc.graceSeconds,
    uploadWindowSeconds: config.gc.reserveLeaseSeconds,
    relayBoundSeconds: config.gc.relayBoundSeconds,
    clockSkewMs: config.gc.clockSkewMs,
  });
  collector.start(config.gc.intervalMs);
  // Writes that died leave their rows in 'writing': swept on the collector's schedule, once older
  // than the orphan bound (the orphan sweep then removes their objects).
  const staleWrites = config.gc.intervalMs > 0 ? setInterval(() => void sweepStaleWrites(index, metrics, logger, config.gc.orphanMinAgeSeconds).catch(
    (err: Error) => logger.warn({ err: err.message }, "stale-write sweep failed"),
  ), config.gc.intervalMs) : undefined;
  staleWrites?.unref();
  const limits = userRateLimits(config, metrics, logger);
  return {
    config, logger, metrics, index, nodes, shards, store, volumes, volumeRepairer, repairer, scrubber, collector,
    grants: new BlockGrants(config.grantKeys, config.blockGrantSeconds), limits, refreshNodeStates: deadNodes.refresh,
    close: async () => {
      collector.stop();
      clearInterval(staleWrites);
      deadNodes.stop();
      stopRedundancy();
      scrubber.stop();
      nodes.stop();
      repairer.stop();
      volumeRepairer.stop();
      clearInterval(volumeScrub);
      await volumes.drain();
      await limits.close();
      await index.close();
    },
  };
}
