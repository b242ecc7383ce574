import { Counter, Gauge, Histogram } from "prom-client";
import { ServiceMetrics } from "@satchel/proto";

/** Blockserver metrics beyond the shared RPC ones. */
export class BlockserverMetrics extends ServiceMetrics {
  readonly blockBytes = new Counter({
    name: "satchel_blockserver_block_bytes_total",
    help: "Logical block bytes, by direction (written, read).",
    labelNames: ["direction"],
    registers: [this.registry],
  });
  readonly shardBytes = new Counter({
    name: "satchel_blockserver_shard_bytes_total",
    help: "Physical shard bytes moved to or from storage nodes, by direction.",
    labelNames: ["direction"],
    registers: [this.registry],
  });
  readonly shardFailures = new Counter({
    name: "satchel_blockserver_shard_failures_total",
    help: "Shard reads or writes that failed, by node and operation.",
    labelNames: ["node", "operation"],
    registers: [this.registry],
  });
  readonly shardWrites = new Counter({
    name: "satchel_blockserver_shard_writes_total",
    help: "Shards written, by node.",
    labelNames: ["node"],
    registers: [this.registry],
  });
  readonly blocksDegraded = new Gauge({
    name: "satchel_blockserver_blocks_degraded",
    help: "Live blocks with fewer than k+m healthy shards (on nodes up and not dead): redundancy lost, repair pending.",
    registers: [this.registry],
  });

  readonly blocksAtRisk = new Gauge({
    name: "satchel_blockserver_blocks_at_risk",
    help: "Live blocks with fewer than k healthy shards: unreadable until nodes return.",
    registers: [this.registry],
  });

  readonly nodeUp = new Gauge({
    name: "satchel_blockserver_storage_node_up",
    help: "1 when the storage node answers, 0 when it is marked down.",
    labelNames: ["node"],
    registers: [this.registry],
  });
  readonly repairsQueued = new Counter({
    name: "satchel_blockserver_repairs_queued_total",
    help: "Blocks queued for repair (from reads, degraded writes, scrub and index sweeps).",
    registers: [this.registry],
  });
  readonly repairQueueLength = new Gauge({
    name: "satchel_blockserver_repair_queue_blocks",
    help: "Blocks waiting for repair.",
    registers: [this.registry],
  });
  readonly repairs = new Counter({
    name: "satchel_blockserver_repairs_total",
    help: "Block repairs finished, by result (repaired, partial, unavailable: waiting for nodes, lost).",
    labelNames: ["result"],
    registers: [this.registry],
  });
  readonly shardsRebuilt = new Counter({
    name: "satchel_blockserver_shards_rebuilt_total",
    help: "Shards rebuilt from the others and rewritten.",
    registers: [this.registry],
  });
  readonly rebuildsRejected = new Counter({
    name: "satchel_blockserver_rebuilds_rejected_total",
    help: "Repairs whose rebuilt shards did not decode to the block hash (a shard passed its checksum with wrong bytes); nothing was written.",
    registers: [this.registry],
  });
  readonly repairClaimsLost = new Counter({
    name: "satchel_blockserver_repair_claims_lost_total",
    help: "Repairs that stopped because another repairer had taken their block over (a lease ran out while this one stalled).",
    registers: [this.registry],
  });
  readonly staleWritesSwept = new Counter({
    name: "satchel_blockserver_stale_writes_swept_total",
    help: "Blocks left in 'writing' by writes that died, removed from the index (their shard objects become orphans).",
    registers: [this.registry],
  });
  readonly scrubBlocks = new Counter({
    name: "satchel_blockserver_scrub_blocks_verified_total",
    help: "Blocks whose every shard the scrubber read and verified.",
    registers: [this.registry],
  });
  readonly scrubBytes = new Counter({
    name: "satchel_blockserver_scrub_bytes_verified_total",
    help: "Shard bytes the scrubber read and verified.",
    registers: [this.registry],
  });
  readonly scrubFindings = new Counter({
    name: "satchel_blockserver_scrub_findings_total",
    help: "Damaged shards the scrubber found, by kind (missing, corrupt, dead_node).",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly scrubPasses = new Counter({
    name: "satchel_blockserver_scrub_passes_total",
    help: "Full scrub passes finished.",
    registers: [this.registry],
  });
  readonly scrubProgress = new Gauge({
    name: "satchel_blockserver_scrub_progress_ratio",
    help: "Fraction of live blocks verified in the current pass.",
    registers: [this.registry],
  });
  readonly scrubLastPass = new Gauge({
    name: "satchel_blockserver_scrub_last_pass_timestamp_seconds",
    help: "When the last full scrub pass finished (Unix seconds).",
    registers: [this.registry],
  });
  readonly gcCandidates = new Counter({
    name: "satchel_blockserver_gc_candidates_total",
    help: "Unreferenced blocks past their grace period that the collector found.",
    registers: [this.registry],
  });
  readonly gcBlocksDeleted = new Counter({
    name: "satchel_blockserver_gc_blocks_deleted_total",
    help: "Blocks the collector deleted.",
    registers: [this.registry],
  });
  readonly gcBytesReclaimed = new Counter({
    name: "satchel_blockserver_gc_reclaimed_bytes_total",
    help: "Logical bytes of deleted blocks.",
    registers: [this.registry],
  });
  readonly gcPaused = new Gauge({
    name: "satchel_blockserver_gc_paused",
    help: "1 while garbage collection takes no new block because a source of reference changes is silent, unknown or holds old changes (its last run).",
    registers: [this.registry],
  });
  readonly gcAwaiting = new Gauge({
    name: "satchel_blockserver_gc_awaiting_blocks",
    help: "Unreferenced blocks past their grace kept by the last run: waiting for the reference relays to deliver (reason=relay) or for a node holding a shard to come back (reason=nodes).",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly referenceSourceLag = new Gauge({
    name: "satchel_blockserver_reference_source_lag_seconds",
    help: "How far behind now each source of reference changes (a metadata shard's relay) has delivered everything it committed, as of the last collection run.",
    labelNames: ["source"],
    registers: [this.registry],
  });
  readonly orphanShardsRemoved = new Counter({
    name: "satchel_blockserver_orphan_shards_removed_total",
    help: "Shard objects on storage nodes that no index entry named, removed by the orphan sweep.",
    registers: [this.registry],
  });
  readonly unknownReferences = new Counter({
    name: "satchel_blockserver_unknown_references_total",
    help: "Reference changes naming a block the index does not hold (should stay zero).",
    registers: [this.registry],
  });
  readonly degradedReads = new Counter({
    name: "satchel_blockserver_degraded_reads_total",
    help: "Block reads that needed parity to reconstruct missing or corrupt shards.",
    registers: [this.registry],
  });
  readonly codingSeconds = new Histogram({
    name: "satchel_blockserver_erasure_coding_seconds",
    help: "Time spent erasure coding one block, by operation (encode, decode).",
    labelNames: ["operation"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  });

  constructor() {
    super("blockserver");
  }

  /** Labelled series start at zero, so dashboards and alerts see 0 rather than no data. */
  startAtZero(nodeNames: string[]): void {
    for (const name of nodeNames) this.nodeUp.set({ node: name }, 1);
    for (const name of nodeNames) for (const operation of ["write", "read"]) this.shardFailures.inc({ node: name, operation }, 0);
    for (const kind of ["corrupt", "missing", "unreachable", "dead_node"]) this.scrubFindings.inc({ kind }, 0);
    for (const result of ["repaired", "partial", "unavailable", "lost"]) this.repairs.inc({ result }, 0);
  }
}
