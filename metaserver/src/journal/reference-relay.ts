import type { Client } from "@connectrpc/connect";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "@satchel/proto";
import type { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { ReferenceOutbox } from "../store/reference-outbox.js";

const BATCH = 500;
/** How long a commit's wake-up waits, gathering the references of the commits that follow. */
const RELAY_DELAY_MS = 50;

/**
 * Relays block reference changes from each shard's outbox (written in the same transaction as the
 * file versions) to the blockserver, then deletes them. Each change is sent with (source, outbox id),
 * which the blockserver applies exactly once, so a relay that dies between sending and deleting
 * simply sends again. One relay should run per shard at a time (one metaserver here).
 */
export class ReferenceRelay {
  private timer?: NodeJS.Timeout;
  private soon?: NodeJS.Timeout;
  private running?: Promise<number>;
  private again = false;
  private paused = 0;

  private readonly oldestAge: Gauge<"shard">;
  private readonly relayed: Counter;

  constructor(
    private readonly outbox: ReferenceOutbox,
    private readonly blocks: Client<typeof BlockService>,
    private readonly logger: Logger,
    registry: Registry,
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
        for (const id of this.outbox.shardIds) sent += await this.relayShard(id);
      } while (this.again);
      return sent;
    })().finally(() => (this.running = undefined));
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
      const { changes, oldestAgeSeconds } = await this.outbox.pending(shardId, BATCH);
      this.oldestAge.set({ shard: String(shardId) }, oldestAgeSeconds);
      if (changes.length === 0) return sent;
      await this.blocks.adjustReferences({ source: sourceOf(shardId), changes });
      await this.outbox.acknowledge(shardId, changes[changes.length - 1].sequence);
      this.relayed.inc(changes.length);
      sent += changes.length;
      if (changes.length < BATCH) return sent;
    }
  }
}

export const sourceOf = (shardId: number) => `meta-shard-${shardId}`;
