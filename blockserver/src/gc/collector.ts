import type { Logger } from "@satchel/proto";
import { shardKey, type ShardIO } from "../shard-io/shard-io.js";
import type { BlockIndex } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import { ShardMissingError } from "../nodes/storage-node.js";

export interface CollectionResult {
  candidates: number;
  blocksDeleted: number;
  bytesReclaimed: number;
}

const BATCH = 200;

/**
 * Reference-count garbage collection. A block is deleted only when no file version references it
 * (count <= 0), its grace period has passed, and no commit holds a reservation on it. Deletion is
 * three steps, each safe to repeat: mark 'deleting' under the row lock (a commit's reservation takes
 * the same lock, so one of them wins), remove the shards, remove the rows. A PutBlock meanwhile is
 * told to retry, and a ReserveBlocks reports the block absent so the uploader sends it again.
 */
export class Collector {
  private running?: Promise<CollectionResult>;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly shards: ShardIO,
    private readonly index: BlockIndex,
    private readonly metrics: BlockserverMetrics,
    private readonly logger: Logger,
    private readonly graceSeconds: number,
    /** How long a user's upload of a block counts as proof it holds it (then its row is swept). */
    private readonly uploadWindowSeconds: number,
  ) {}

  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => void this.run().catch((err: Error) => this.logger.warn({ err: err.message }, "gc run failed")), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  run(graceSeconds = this.graceSeconds): Promise<CollectionResult> {
    this.running ??= this.collect(graceSeconds).finally(() => (this.running = undefined));
    return this.running;
  }

  private async collect(graceSeconds: number): Promise<CollectionResult> {
    const result: CollectionResult = { candidates: 0, blocksDeleted: 0, bytesReclaimed: 0 };
    for (let shard = 0; shard < this.index.shardCount; shard++) {
      while ((await this.index.sweepUploads(shard, this.uploadWindowSeconds, 10_000)) === 10_000);
      // First finish what an earlier run left half-done.
      for (const hash of await this.index.deleting(shard, 10_000)) await this.remove(hash, result);
      for (;;) {
        const batch = await this.index.collectable(shard, graceSeconds, BATCH);
        result.candidates += batch.length;
        this.metrics.gcCandidates.inc(batch.length);
        let marked = 0;
        for (const hash of batch) {
          if (!(await this.index.beginDelete(hash, graceSeconds))) continue; // reserved or referenced meanwhile
          marked++;
          await this.remove(hash, result);
        }
        if (batch.length < BATCH || marked === 0) break;
      }
    }
    if (result.blocksDeleted > 0) this.logger.info(result, "garbage collection deleted blocks");
    return result;
  }

  private async remove(hash: Buffer, result: CollectionResult): Promise<void> {
    const record = await this.index.get(hash);
    if (!record || record.state !== "deleting") return;
    // A node that is down (not dead) would make every delete wait for its timeout: the block stays
    // 'deleting' and a later run finishes it once the node answers. A dead node's shards are gone.
    if (record.shards.some((p) => !this.shards.nodes.isDead(p.node) && this.shards.nodes.get(p.node)?.healthy === false)) return;
    const outcomes = await Promise.allSettled(record.shards.map(async (p) => {
      const node = this.shards.nodes.get(p.node);
      if (!node || this.shards.nodes.isDead(p.node)) return;
      try {
        await node.delete(shardKey(hash, p.index));
      } catch (err) {
        if (!(err instanceof ShardMissingError)) throw err;
      }
    }));
    if (outcomes.some((o) => o.status === "rejected")) return; // a node is down: the next run finishes it
    await this.index.finishDelete(hash);
    result.blocksDeleted++;
    result.bytesReclaimed += record.size;
    this.metrics.gcBlocksDeleted.inc();
    this.metrics.gcBytesReclaimed.inc(record.size);
  }
}
