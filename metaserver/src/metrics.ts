import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { ShardSet } from "./store/shards.js";
import type { VerifyMetrics } from "./verify/verifier.js";

/** Metaserver-specific metrics beside the shared RPC ones. */
export interface MetaMetrics {
  conflicts: Counter;
  quotaRefusals: Counter;
  shardUp: Gauge<"shard">;
  shardPing: Histogram<"shard">;
  /** How many commits share each shard transaction, and commits sent on alone instead. */
  groupCommit: { members: Histogram; alone: Counter<"reason"> };
  /** Blocks commits needed reserved, by who answered: this metaserver's recent reservations, or the blockserver. */
  blockReservations: Counter<"answer">;
  /** What reconciliation of block references finds and how often it runs. */
  reconcile: ReconcileMetrics;
  /** What the last verify run found, when it finished and how long it took; runs by result. */
  verify: VerifyMetrics;
}

export interface ReconcileMetrics {
  /** Blocks whose reference count the last reconciliation corrected, and by how much in all. */
  drift: Gauge<"measure">;
  reconciliations: Counter<"result">;
  lastRun: Gauge;
}

/**
 * The metaserver's own metrics (the RPC ones are shared), registered once; gauges that sample live
 * state read it from `live` when scraped.
 */
export function createMetaMetrics(registry: Registry, live: { shards: ShardSet; unpublished: () => number }): MetaMetrics {
  const { shards } = live;
  const metaMetrics: MetaMetrics = {
    conflicts: new Counter({
      name: "satchel_metaserver_conflicts_total",
      help: "Commits whose parent revision was stale, kept as conflicted copies.",
      registers: [registry],
    }),
    quotaRefusals: new Counter({
      name: "satchel_metaserver_quota_refusals_total",
      help: "Changes refused because the owner's quota would be exceeded.",
      registers: [registry],
    }),
    shardUp: new Gauge({
      name: "satchel_metaserver_shard_up",
      help: "Whether a metadata shard (and the directory, shard=\"directory\") answers a probe query.",
      labelNames: ["shard"],
      registers: [registry],
    }),
    groupCommit: {
      members: new Histogram({
        name: "satchel_metaserver_group_commit_members",
        help: "Commits (of different namespaces) applied in one shard transaction with one COMMIT (refused ones included); 1: the shard was idle.",
        buckets: [1, 2, 4, 8, 16, 32, 64, 128],
        registers: [registry],
      }),
      alone: new Counter({
        name: "satchel_metaserver_group_commit_alone_total",
        help: "Commits that waited for a group but went on alone: their namespace was moving (reason=relocating), or their group failed before its COMMIT (reason=group_failed: a deadlock or a shard error; nothing of it was written).",
        labelNames: ["reason"],
        registers: [registry],
      }),
    },
    blockReservations: new Counter({
      name: "satchel_metaserver_block_reservations_total",
      help: "Blocks a commit needed reserved against collection: answer=recent were reserved by this metaserver moments ago (no ReserveBlocks call), answer=blockserver were asked about.",
      labelNames: ["answer"],
      registers: [registry],
    }),
    reconcile: {
      drift: new Gauge({
        name: "satchel_metaserver_reference_drift",
        help: "Found (and corrected) by the last reference reconciliation: blocks whose count was wrong (measure=blocks), the sum of the differences (measure=references), blocks counted below the versions holding them (measure=blocks_counted_low: collection could take them) and above (measure=blocks_counted_high).",
        labelNames: ["measure"],
        registers: [registry],
      }),
      reconciliations: new Counter({
        name: "satchel_metaserver_reference_reconciliations_total",
        help: "Reference reconciliations run (on schedule, after a relay outage, or asked for), by result.",
        labelNames: ["result"],
        registers: [registry],
      }),
      lastRun: new Gauge({
        name: "satchel_metaserver_reference_reconcile_last_timestamp_seconds",
        help: "When the last reference reconciliation finished (Unix seconds).",
        registers: [registry],
      }),
    },
    shardPing: new Histogram({
      name: "satchel_metaserver_shard_probe_seconds",
      help: "Round trip of a probe query to each metadata shard.",
      labelNames: ["shard"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    verify: {
      unreadableBlocks: new Gauge({
        name: "satchel_metaserver_verify_unreadable_blocks",
        help: "Referenced blocks with fewer than k good shards, found by the last verify run (lost or unavailable): files that cannot be read.",
        registers: [registry],
      }),
      lostBlocks: new Gauge({
        name: "satchel_metaserver_verify_lost_blocks",
        help: "Referenced blocks with more than m shards proven gone, found by the last verify run: their bytes are gone.",
        registers: [registry],
      }),
      belowFullRedundancyBlocks: new Gauge({
        name: "satchel_metaserver_verify_below_full_redundancy_blocks",
        help: "Referenced blocks with fewer than k+m good shards (unreadable ones included), found by the last verify run.",
        registers: [registry],
      }),
      missingIndexBlocks: new Gauge({
        name: "satchel_metaserver_verify_missing_index_blocks",
        help: "Referenced blocks the block index has no live row for, found by the last verify run.",
        registers: [registry],
      }),
      lastRunTimestamp: new Gauge({
        name: "satchel_metaserver_verify_last_run_timestamp_seconds",
        help: "Unix time the last verify run finished (0: none has since the metaserver started).",
        registers: [registry],
      }),
      lastRunDuration: new Gauge({
        name: "satchel_metaserver_verify_last_run_duration_seconds",
        help: "How long the last finished verify run took.",
        registers: [registry],
      }),
      runs: new Counter({
        name: "satchel_metaserver_verify_runs_total",
        help: "Verify runs, by result (ok, failed).",
        labelNames: ["result"],
        registers: [registry],
      }),
    },
  };
  // Both reasons are series from the start (at 0), so a rate of them is there before the first.
  for (const reason of ["relocating", "group_failed"]) metaMetrics.groupCommit.alone.inc({ reason }, 0);
  for (const answer of ["recent", "blockserver"]) metaMetrics.blockReservations.inc({ answer }, 0);
  new Gauge({
    name: "satchel_metaserver_shard_pool_connections",
    help: "Connections of each shard's pool, by state (in use or idle).",
    labelNames: ["shard", "state"],
    registers: [registry],
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
    registers: [registry],
    collect() {
      this.set(live.unpublished());
    },
  });
  for (const measure of ["blocks", "references", "blocks_counted_low", "blocks_counted_high"]) metaMetrics.reconcile.drift.set({ measure }, 0);
  for (const result of ["ok", "failed"]) metaMetrics.reconcile.reconciliations.inc({ result }, 0);
  for (const result of ["ok", "failed"]) metaMetrics.verify.runs.inc({ result }, 0);
  return metaMetrics;
}
