import type { Client } from "@connectrpc/connect";
import { Counter, Gauge, type Registry } from "prom-client";
import { referenceSourceOf, type Logger } from "@satchel/proto";
import type { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { ReferenceOutbox } from "../store/reference-outbox.js";

const BATCH = 500;
/** How long a commit's wake-up waits, gathering the references of the commits that follow. */
const RELAY_DELAY_MS = 50;
/** A shard with nothing to send still reports this often, so that garbage collection can move on. */
const REPORT_EVERY_MS = 1000;

/**
 * Relays block reference changes from each shard's outbox (written in the same transaction as the
 * file versions) to the blockserver, then deletes exactly the ones sent. Each change is sent with
 * (source, outbox id), which the blockserver applies exactly once, so a relay that dies between
 * sending and deleting simply sends again. One relay should run per shard at a time (one metaserver
 * here).
 *
 * Each batch also tells the blockserver how far the shard has delivered: a time the blockserver
 * itself answered with earlier, before this batch's outbox read began, so everything committed
 * before it was visible to the read and is in this batch or an earlier one. Garbage collection
 * takes a block at zero only once every shard has delivered past the moment it reached zero, and
 * pauses while a shard is silent or its outbox is old. When the relay recovers from an outage it
 * says so (`onRecovered`): the reconciler then checks the counts.
 */
export class ReferenceRelay {
  private timer?: NodeJS.Timeout;
  private soon?: NodeJS.Timeout;
  private running?: Promise<number>;
  private again = false;
  private paused = 0;
  /** Per shard: the blockserver's time in its last answer (a claim for the next batch), and when that was. */
  private readonly reported = new Map<number, { serverTimeMs: bigint; atMs: number }>();
  private failingSince?: number;

  private readonly oldestAge: Gauge<"shard">;
  private readonly relayed: Counter;

  constructor(
    private readonly outbox: ReferenceOutbox,
    private readonly blocks: Client<typeof BlockService>,
    private readonly logger: Logger,
    registry: Registry,
    /** Called when a pass succeeds after passes that failed, with how long they failed. */
    private readonly onRecovered: (outageMs: number) => void = () => undefined,
  ) {
    // Reservations protect blocks for the lease only: an outbox this far behind is an incident.
    this.oldestAge = new Gauge({
      name: "satchel_metaserver_reference_outbox_oldest_seconds",
      help: "Age of the oldest block reference change not yet relayed to the blockserver, by shard.",
      labelNames: ["shard"],
      registers: [registry],
    });
    this.relayed = new Counter({
      name: "satchel_metaserver_reference_changes_relayed_total",
      help: "Block reference changes relayed to the blockserver.",
      registers: [registry],
    });
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => this.wake(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
  }

  /**
   * Runs a relay pass soon (after a commit): a few milliseconds later, so that the references of
   * many commits travel in one AdjustReferences call. Reservations cover the blocks meanwhile.
   */
  wake(): void {
    if (this.paused > 0 || this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      if (this.running) {
        this.again = true;
        return;
      }
      void this.drain().catch((err: Error) => this.logger.warn({ err: err.message }, "reference relay failed; retrying later"));
    }, RELAY_DELAY_MS);
  }

  /** Relays everything pending now; resolves with the number of changes sent. */
  drain(): Promise<number> {
    this.running ??= (async () => {
      let sent = 0;
      do {
        this.again = false;
        // Shards are independent: one that cannot deliver (its database down) holds back no other.
        let failure: unknown;
        for (const id of this.outbox.shardIds) {
          sent += await this.relayShard(id).catch((err: unknown) => {
            failure ??= err;
            return 0;
          });
        }
        if (failure) throw failure;
      } while (this.again);
      return sent;
    })().then(
      (sent) => {
        if (this.failingSince !== undefined) {
          const outageMs = Date.now() - this.failingSince;
          this.failingSince = undefined;
          this.logger.info({ outageMs }, "reference relay recovered");
          this.onRecovered(outageMs);
        }
        return sent;
      },
      (err: unknown) => {
        this.failingSince ??= Date.now();
        throw err;
      },
    ).finally(() => (this.running = undefined));
    return this.running;
  }

  /** Holds the relay (the reconciler needs counts that do not move under it). */
  async pause<T>(fn: () => Promise<T>): Promise<T> {
    this.paused++;
    try {
      await this.running?.catch(() => undefined);
      return await fn();
    } finally {
      this.paused--;
    }
  }

  private async relayShard(shardId: number): Promise<number> {
    let sent = 0;
    for (;;) {
      // Answered before the read below began: a claim the read covers.
      const before = this.reported.get(shardId);
      const { changes, oldestAgeSeconds } = await this.outbox.pending(shardId, BATCH);
      this.oldestAge.set({ shard: String(shardId) }, oldestAgeSeconds);
      if (changes.length === 0 && before && Date.now() - before.atMs < REPORT_EVERY_MS) return sent;
      // A full batch may leave older changes unread behind it: claim only when the read saw them all.
      const readAll = changes.length < BATCH;
      const answer = await this.blocks.adjustReferences({
        source: referenceSourceOf(shardId), changes,
        deliveredThroughMs: readAll && before ? before.serverTimeMs : 0n,
        // What still waits once this batch is in: nothing when the read saw everything.
        oldestPendingSeconds: readAll ? 0 : oldestAgeSeconds,
      });
      this.reported.set(shardId, { serverTimeMs: answer.serverTimeMs, atMs: Date.now() });
      await this.outbox.acknowledge(shardId, changes.map((c) => c.sequence));
      this.relayed.inc(changes.length);
      sent += changes.length;
      if (readAll) return sent;
    }
  }
}
