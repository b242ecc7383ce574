import { createClient, type Client } from "@connectrpc/connect";
import { Counter, Gauge, Histogram } from "prom-client";
import { AccessTokens, createLogger, createSatchelTransport, ServiceMetrics, type Logger } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { MetaserverConfig } from "./config.js";
import { CursorWatcher } from "./journal/cursor-watch.js";
import { CommitPublisher } from "./journal/publisher.js";
import { ReferenceRelay } from "./journal/reference-relay.js";
import { RetentionJob } from "./journal/retention.js";
import { FileStore } from "./store/files.js";
import { NamespaceStore } from "./store/namespaces.js";
import { Quotas } from "./store/quotas.js";
import { CursorStates } from "./store/cursor-state.js";
import { openShardSet, type ShardSet } from "./store/shards.js";
import { Verifier, type VerifyMetrics } from "./verify/verifier.js";

/** Metaserver-specific metrics beside the shared RPC ones. */
export interface MetaMetrics {
  conflicts: Counter;
  quotaRefusals: Counter;
  shardUp: Gauge<"shard">;
  shardPing: Histogram<"shard">;
  /** Blocks whose reference count the last reconciliation corrected, and by how much in all. */
  referenceDrift: Gauge<"measure">;
  /** What the last verify run found, when it finished and how long it took; runs by result. */
  verify: VerifyMetrics;
}

/** Every long-lived client of the metaserver, built once; close() releases them. */
export interface MetaserverContext {
  config: MetaserverConfig;
  logger: Logger;
  metrics: ServiceMetrics;
  metaMetrics: MetaMetrics;
  shards: ShardSet;
  namespaces: NamespaceStore;
  files: FileStore;
  quotas: Quotas;
  accessTokens: AccessTokens;
  blocks: Client<typeof BlockService>;
  blockAdmin: Client<typeof BlockAdminService>;
  publisher: CommitPublisher;
  cursors: CursorWatcher;
  relay: ReferenceRelay;
  retention: RetentionJob;
  verifier: Verifier;
  close(): Promise<void>;
}

export async function createContext(config: MetaserverConfig): Promise<MetaserverContext> {
  const logger = createLogger("metaserver", config.logLevel);
  const shards = await openShardSet(config.directoryUrl, config.shardPoolSize);
  const namespaces = new NamespaceStore(shards);
  const publisher = new CommitPublisher(config.redisUrl, logger, config.cursorCacheSeconds);
  const cursorStates = new CursorStates(namespaces);
  const quotas = new Quotas(namespaces, cursorStates, config.defaultQuotaBytes);
  const files = new FileStore(namespaces, cursorStates, quotas, (ns, cursor) => publisher.published(ns, cursor));
  const cursors = new CursorWatcher(config.redisUrl, publisher, files, logger, (ns) => namespaces.forgetPlacement(ns));
  const blockTransport = createSatchelTransport({ baseUrl: config.blockserverUrl, token: config.serviceToken });
  const blocks = createClient(BlockService, blockTransport);
  const blockAdmin = createClient(BlockAdminService, blockTransport);
  const metrics = new ServiceMetrics("metaserver");
  const metaMetrics: MetaMetrics = {
    conflicts: new Counter({
      name: "satchel_metaserver_conflicts_total",
      help: "Commits whose parent revision was stale, kept as conflicted copies.",
      registers: [metrics.registry],
    }),
    quotaRefusals: new Counter({
      name: "satchel_metaserver_quota_refusals_total",
      help: "Changes refused because the owner's quota would be exceeded.",
      registers: [metrics.registry],
    }),
    shardUp: new Gauge({
      name: "satchel_metaserver_shard_up",
      help: "Whether a metadata shard (and the directory, shard=\"directory\") answers a probe query.",
      labelNames: ["shard"],
      registers: [metrics.registry],
    }),
    referenceDrift: new Gauge({
      name: "satchel_metaserver_reference_drift",
      help: "Found by the last reference reconciliation: blocks whose count was wrong (measure=blocks) and the sum of the differences (measure=references).",
      labelNames: ["measure"],
      registers: [metrics.registry],
    }),
    shardPing: new Histogram({
      name: "satchel_metaserver_shard_probe_seconds",
      help: "Round trip of a probe query to each metadata shard.",
      labelNames: ["shard"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [metrics.registry],
    }),
    verify: {
      unreadableBlocks: new Gauge({
        name: "satchel_metaserver_verify_unreadable_blocks",
        help: "Referenced blocks with fewer than k good shards, found by the last verify run (lost or unavailable): files that cannot be read.",
        registers: [metrics.registry],
      }),
      lostBlocks: new Gauge({
        name: "satchel_metaserver_verify_lost_blocks",
        help: "Referenced blocks with more than m shards proven gone, found by the last verify run: their bytes are gone.",
        registers: [metrics.registry],
      }),
      belowFullRedundancyBlocks: new Gauge({
        name: "satchel_metaserver_verify_below_full_redundancy_blocks",
        help: "Referenced blocks with fewer than k+m good shards (unreadable ones included), found by the last verify run.",
        registers: [metrics.registry],
      }),
      missingIndexBlocks: new Gauge({
        name: "satchel_metaserver_verify_missing_index_blocks",
        help: "Referenced blocks the block index has no live row for, found by the last verify run.",
        registers: [metrics.registry],
      }),
      lastRunTimestamp: new Gauge({
        name: "satchel_metaserver_verify_last_run_timestamp_seconds",
        help: "Unix time the last verify run finished (0: none has since the metaserver started).",
        registers: [metrics.registry],
      }),
      lastRunDuration: new Gauge({
        name: "satchel_metaserver_verify_last_run_duration_seconds",
        help: "How long the last finished verify run took.",
        registers: [metrics.registry],
      }),
      runs: new Counter({
        name: "satchel_metaserver_verify_runs_total",
        help: "Verify runs, by result (ok, failed).",
        labelNames: ["result"],
        registers: [metrics.registry],
      }),
    },
  };
  new Gauge({
    name: "satchel_metaserver_shard_pool_connections",
    help: "Connections of each shard's pool, by state (in use or idle).",
    labelNames: ["shard", "state"],
    registers: [metrics.registry],
    collect() {
      for (const id of ["directory", ...shards.shardIds.map(String)]) {
        const usage = shards.poolUsage(id === "directory" ? "directory" : Number(id));
        this.set({ shard: id, state: "in_use" }, usage.inUse);
        this.set({ shard: id, state: "idle" }, usage.idle);
      }
    },
  });
  new Gauge({
    name: "satchel_metaserver_unpublished_namespaces",
    help: "Namespaces whose latest cursor could not be published to Redis yet (journal lag of the push path).",
    registers: [metrics.registry],
    collect() {
      this.set(publisher.unpublishedCount);
    },
  });
  metaMetrics.referenceDrift.set({ measure: "blocks" }, 0);
  metaMetrics.referenceDrift.set({ measure: "references" }, 0);
  for (const result of ["ok", "failed"]) metaMetrics.verify.runs.inc({ result }, 0);
  // Probe every shard: an unreachable shard is an alert before it is a user's error.
  const probe = async () => {
    const targets: [string, { query(sql: string): Promise<unknown> }][] = [["directory", shards.directory], ...shards.shardIds.map((id) => [String(id), shards.shard(id)] as [string, typeof shards.directory])];
    await Promise.all(targets.map(async ([name, pool]) => {
      const started = performance.now();
      try {
        await Promise.race([pool.query("SELECT 1"), new Promise((_, reject) => setTimeout(() => reject(new Error("probe timeout")), 2000))]);
        metaMetrics.shardUp.set({ shard: name }, 1);
        metaMetrics.shardPing.observe({ shard: name }, (performance.now() - started) / 1000);
      } catch {
        metaMetrics.shardUp.set({ shard: name }, 0);
      }
    }));
  };
  const probeTimer = setInterval(() => void probe(), 5000);
  probeTimer.unref();
  void probe();
  const relay = new ReferenceRelay(shards, blocks, logger, metrics.registry);
  relay.start(1000);
  const retention = new RetentionJob(shards, files, logger, {
    retentionDays: config.retentionDays, versionsKept: config.versionsKept, journalDays: config.journalRetentionDays,
  });
  if (config.pruneIntervalSeconds > 0) retention.start(config.pruneIntervalSeconds * 1000);
  const verifier = new Verifier(shards, blockAdmin, logger, metaMetrics.verify);
  if (config.verifyIntervalSeconds > 0) verifier.start(config.verifyIntervalSeconds * 1000);
  return {
    config, logger, metrics, metaMetrics, shards, namespaces, files, quotas, accessTokens: new AccessTokens(config.tokenKeys),
    blocks, blockAdmin, publisher, cursors, relay, retention, verifier,
    close: async () => {
      clearInterval(probeTimer);
      retention.stop();
      verifier.stop();
      relay.stop();
      cursors.close();
      await publisher.close();
      await shards.close();
    },
  };
}
