import type { Logger } from "@satchel/proto";
import type { RetentionPolicy } from "../store/file-records.js";
import type { JournalStore } from "../store/journal-store.js";
import type { NamespacePlacement } from "../store/placement.js";

export interface RetentionReport {
  versionsPruned: number;
  entriesPurged: number;
  journalCompacted: number;
}

/** Applies the retention policy to every active namespace on every shard, now or periodically. */
export class RetentionJob {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RetentionReport> | undefined;

  constructor(private readonly placement: Pick<NamespacePlacement, "shardIds" | "activeNamespacesOn">, private readonly journal: Pick<JournalStore, "prune">, private readonly logger: Logger, private readonly policy: RetentionPolicy) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.run().catch((err: Error) => this.logger.warn({ err: err.message }, "retention pass failed")), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One pass; concurrent callers share the pass in progress. */
  run(): Promise<RetentionReport> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<RetentionReport> {
    const report: RetentionReport = { versionsPruned: 0, entriesPurged: 0, journalCompacted: 0 };
    for (const id of this.placement.shardIds) {
      for (const ns of await this.placement.activeNamespacesOn(id)) {
        try {
          const n = await this.journal.prune(ns, this.policy);
          report.versionsPruned += n.versions;
          report.entriesPurged += n.purged;
          report.journalCompacted += n.journal;
        } catch (err) {
          // A namespace that moved or is moving is pruned on its new shard next time.
          this.logger.debug({ namespaceId: String(ns), err: (err as Error).message }, "retention skipped a namespace");
        }
      }
    }
    if (report.versionsPruned + report.entriesPurged + report.journalCompacted > 0) this.logger.info(report, "retention pass");
    return report;
  }
}
