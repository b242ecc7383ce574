import type { Logger } from "@satchel/proto";
import type { BlockStore, RepairSink } from "../block-store.js";
import type { BlockIndex, BlockRecord, ShardPlacement } from "../index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";

export interface RepairResult {
  /** Shards that were missing or corrupt. */
  damaged: number;
  /** Shards rewritten. */
  rebuilt: number;
  /** Fewer than k good shards: the block cannot be rebuilt. */
  lost: boolean;
}

/**
 * Rebuilds missing and corrupt shards from the good ones and writes them back: to the node that
 * should hold them when it is healthy, otherwise to another healthy node (preferring one that holds
 * no other shard of the block). Blocks arrive from reads (heal on read), from writes that landed
 * below full redundancy, from the scrubber, and from a periodic sweep of the index.
 */
export class Repairer implements RepairSink {
  private readonly queue = new Map<string, Buffer>();
  private running = false;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly store: BlockStore,
    private readonly index: BlockIndex,
    private readonly metrics: BlockserverMetrics,
    private readonly logger: Logger,
  ) {}

  enqueue(hash: Buffer, reason: string): void {
    const key = hash.toString("hex");
    if (this.queue.has(key)) return;
    this.queue.set(key, hash);
    this.metrics.repairsQueued.inc();
    this.metrics.repairQueueLength.set(this.queue.size);
    this.logger.debug({ block: key, reason }, "repair queued");
    void this.drain();
  }

  get pending(): number {
    return this.queue.size;
  }

  /** Sweeps the index for blocks with shards recorded as missing, every intervalMs. */
  start(intervalMs: number): void {
    this.sweepNow();
    this.timer = setInterval(() => this.sweepNow(), intervalMs);
    this.timer.unref();
  }

  sweepNow(): void {
    void this.index.blocksWithMissingShards(500).then(
      (hashes) => hashes.forEach((h) => this.enqueue(h, "index sweep")),
      (err: Error) => this.logger.warn({ err: err.message }, "repair sweep failed"),
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.size > 0) {
        const [key, hash] = this.queue.entries().next().value as [string, Buffer];
        this.queue.delete(key);
        this.metrics.repairQueueLength.set(this.queue.size);
        try {
          await this.repair(hash);
        } catch (err) {
          this.logger.warn({ block: key, err: (err as Error).message }, "repair failed; the sweep will retry");
        }
      }
    } finally {
      this.running = false;
    }
  }

  async repair(hash: Buffer): Promise<RepairResult> {
    const record = await this.index.get(hash);
    if (!record || record.state !== "live") return { damaged: 0, rebuilt: 0, lost: false };
    const shards = await this.store.readAllShards(record);
    return this.rebuild(record, shards);
  }

  /** Rebuilds the shards that are undefined in `shards` (already read and verified by the caller). */
  async rebuild(record: BlockRecord, shards: (Buffer | undefined)[]): Promise<RepairResult> {
    const damaged = shards.flatMap((s, i) => (s ? [] : [i]));
    const hex = record.hash.toString("hex");
    if (damaged.length === 0) {
      await this.index.markVerified(record.hash);
      return { damaged: 0, rebuilt: 0, lost: false };
    }
    const good = shards.length - damaged.length;
    if (good < record.dataShards) {
      this.metrics.repairs.inc({ result: "lost" });
      this.logger.error({ block: hex, good, needed: record.dataShards }, "block has fewer than k good shards and cannot be rebuilt");
      return { damaged: damaged.length, rebuilt: 0, lost: true };
    }
    const all = await this.store.codec.reconstructShards(shards, record.size);
    let rebuilt = 0;
    for (const i of damaged) {
      const target = this.chooseNode(record, record.shards[i]);
      if (!target) {
        await this.index.setShard(record.hash, { ...record.shards[i], state: "missing" });
        continue;
      }
      const placement = await this.store.writeShard(record, i, all[i], target);
      await this.index.setShard(record.hash, placement);
      record.shards[i] = placement;
      rebuilt++;
    }
    this.metrics.repairs.inc({ result: rebuilt === damaged.length ? "repaired" : "partial" }, 1);
    this.metrics.shardsRebuilt.inc(rebuilt);
    if (rebuilt === damaged.length) await this.index.markVerified(record.hash);
    this.logger.info({ block: hex, damaged: damaged.length, rebuilt }, "block repaired");
    return { damaged: damaged.length, rebuilt, lost: false };
  }

  /**
   * The node a rebuilt shard goes to: its home when healthy, else a healthy node holding no other
   * shard of the block. Only when the home node is marked dead may two shards share a node (the
   * block is readable again, at reduced independence); otherwise the shard waits for its node.
   */
  private chooseNode(record: BlockRecord, shard: ShardPlacement): string | undefined {
    const nodes = this.store.nodes;
    const home = nodes.get(shard.node);
    if (home?.healthy && !nodes.isDead(home.name)) return home.name;
    const healthy = nodes.healthyNames().filter((n) => !nodes.isDead(n));
    const load = new Map<string, number>(healthy.map((n) => [n, 0]));
    for (const s of record.shards) if (s.index !== shard.index && s.state === "ok" && load.has(s.node)) load.set(s.node, load.get(s.node)! + 1);
    const unused = healthy.find((n) => load.get(n) === 0);
    if (unused) return unused;
    if (!nodes.isDead(shard.node)) return undefined;
    return [...load].sort((a, b) => a[1] - b[1])[0]?.[0];
  }
}
