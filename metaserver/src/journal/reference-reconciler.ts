import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type { Logger } from "@satchel/proto";
import { BlockReferenceCountSchema, type BlockAdminService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { ReferenceOutbox } from "../store/reference-outbox.js";
import type { ReconcileMetrics } from "../metrics.js";
import type { ReferenceRelay } from "./reference-relay.js";

export interface ReconcileReport {
  blocksChecked: number;
  blocksDrifted: number;
  totalDrift: number;
  /** Blocks the blockserver counted fewer references than versions hold: collection could have taken them. */
  blocksCountedLow: number;
  /** Blocks counted more than versions hold: they would never have been collected. */
  blocksCountedHigh: number;
}

/**
 * Runs reconciliation on a schedule, soon after the relay recovers from an outage, and when an
 * operator asks; one run at a time, and every run's findings are exported.
 */
export class ReferenceReconciler {
  private timer?: NodeJS.Timeout;
  private soon?: NodeJS.Timeout;
  private running?: Promise<ReconcileReport>;

  constructor(
    private readonly outbox: ReferenceOutbox,
    private readonly relay: ReferenceRelay,
    private readonly admin: Client<typeof BlockAdminService>,
    private readonly logger: Logger,
    private readonly metrics: ReconcileMetrics,
  ) {}

  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => this.runInBackground("schedule"), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
  }

  /** Asks for a run a little later (several requests in a row make one run). */
  requestSoon(reason: string, delayMs = 2000): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.runInBackground(reason);
    }, delayMs);
    this.soon.unref();
  }

  run(): Promise<ReconcileReport> {
    this.running ??= reconcileReferences(this.outbox, this.relay, this.admin, this.logger).then(
      (report) => {
        this.metrics.reconciliations.inc({ result: "ok" });
        this.metrics.lastRun.set(Date.now() / 1000);
        this.metrics.drift.set({ measure: "blocks" }, report.blocksDrifted);
        this.metrics.drift.set({ measure: "references" }, report.totalDrift);
        this.metrics.drift.set({ measure: "blocks_counted_low" }, report.blocksCountedLow);
        this.metrics.drift.set({ measure: "blocks_counted_high" }, report.blocksCountedHigh);
        return report;
      },
      (err: unknown) => {
        this.metrics.reconciliations.inc({ result: "failed" });
        throw err;
      },
    ).finally(() => (this.running = undefined));
    return this.running;
  }

  private runInBackground(reason: string): void {
    this.logger.info({ reason }, "reference reconciliation starting");
    void this.run().catch((err: Error) => this.logger.warn({ reason, err: err.message }, "reference reconciliation failed; the next one retries"));
  }
}

/**
 * Mark and sweep for block references. With the relay held, every shard is read in one consistent
 * snapshot: each file version counts once for each distinct block it holds, minus the changes of
 * that snapshot still waiting in the outbox (the blockserver has not seen them). Blocks the
 * blockserver counts differently are corrected; blocks it counts that no version holds go to zero
 * (and so to garbage collection after their grace period).
 */
export async function reconcileReferences(
  outbox: ReferenceOutbox, relay: ReferenceRelay, admin: Client<typeof BlockAdminService>, logger: Logger,
): Promise<ReconcileReport> {
  return relay.pause(async () => {
    await relay.drain();
    const expected = new Map<string, number>();
    for (const id of outbox.shardIds) await outbox.referencesOn(id, expected);
    const report: ReconcileReport = { blocksChecked: 0, blocksDrifted: 0, totalDrift: 0, blocksCountedLow: 0, blocksCountedHigh: 0 };
    const fixes: { hash: Buffer; refCount: number }[] = [];
    const seen = new Set<string>();
    let pageToken = "";
    do {
      const page = await admin.listReferenceCounts({ pageToken, pageSize: 2000 });
      for (const c of page.counts) {
        const hex = Buffer.from(c.hash).toString("hex");
        seen.add(hex);
        report.blocksChecked++;
        const want = expected.get(hex) ?? 0;
        if (Number(c.refCount) !== want && c.state !== "deleting") {
          report.blocksDrifted++;
          report.totalDrift += Math.abs(Number(c.refCount) - want);
          if (Number(c.refCount) < want) report.blocksCountedLow++;
          else report.blocksCountedHigh++;
          fixes.push({ hash: Buffer.from(c.hash), refCount: want });
        }
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    for (const [hex, n] of expected) {
      if (n > 0 && !seen.has(hex)) logger.error({ block: hex, references: n }, "file versions reference a block the blockserver does not hold");
    }
    for (let i = 0; i < fixes.length; i += 500) {
      await admin.setReferenceCounts({
        counts: fixes.slice(i, i + 500).map((f) => create(BlockReferenceCountSchema, { hash: f.hash, found: true, refCount: BigInt(f.refCount) })),
      });
    }
    if (report.blocksCountedLow > 0) logger.error(report, "reference reconciliation found blocks counted below the versions that hold them (corrected)");
    else logger.info(report, "reference reconciliation finished");
    return report;
  });
}
