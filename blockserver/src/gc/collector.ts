import type { Logger } from "@satchel/proto";
import { shardKey, type ShardIO } from "../shard-io/shard-io.js";
import type { BlockIndex, BlockRecord } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import { ShardMissingError } from "../nodes/storage-node.js";
import { collectionWindow } from "./collection-window.js";

export interface CollectionResult {
  candidates: number;
  blocksDeleted: number;
  bytesReclaimed: number;
  /** Why no new block was taken (see collectionWindow); empty when collection ran. */
  paused: string;
  /** Blocks at zero kept until the relays deliver what was committed before they reached zero. */
  awaitingRelay: number;
  /** Blocks at zero kept because a node holding a shard is down: marking them would strand them. */
  awaitingNodes: number;
}

export interface CollectorSettings {
  graceSeconds: number;
  /** How long a user's upload of a block counts as proof it holds it (then its row is swept). */
  uploadWindowSeconds: number;
  /** Collection pauses while a source of reference changes is silent or behind by more than this. */
  relayBoundSeconds: number;
  /** Clock skew allowed between blockservers and the index databases (see collectionWindow). */
  clockSkewMs: number;
}

const BATCH = 200;

/**
 * Reference-count garbage collection. A block is deleted only when no file version references it
 * (count <= 0), its grace period has passed, no commit holds a reservation on it, every relay of
 * reference changes has delivered what was committed before it reached zero, and every node holding
 * one of its shards answers (a block marked while a node is down could be neither removed nor
 * uploaded again until the node came back). Deletion is
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
    private readonly settings: CollectorSettings,
  ) {}

  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => void this.run().catch((err: Error) => this.logger.warn({ err: err.message }, "gc run failed")), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  run(graceSeconds = this.settings.graceSeconds): Promise<CollectionResult> {
    this.running ??= this.collect(graceSeconds).finally(() => (this.running = undefined));
    return this.running;
  }

  private async collect(graceSeconds: number): Promise<CollectionResult> {
    const result: CollectionResult = { candidates: 0, blocksDeleted: 0, bytesReclaimed: 0, paused: "", awaitingRelay: 0, awaitingNodes: 0 };
    const { uploadWindowSeconds, relayBoundSeconds, clockSkewMs } = this.settings;
    const sources = await this.index.referenceSources();
    const window = collectionWindow(sources, relayBoundSeconds, clockSkewMs);
    for (const s of sources) this.metrics.referenceSourceLag.set({ source: s.source }, s.deliveredThroughMs ? Math.max(0, (Date.now() - s.deliveredThroughMs) / 1000) : -1);
    this.metrics.gcPaused.set(window.paused ? 1 : 0);
    if (window.paused) {
      result.paused = window.paused;
      this.logger.warn({ reason: window.paused }, "garbage collection paused: no new block is collected");
    }
    for (let shard = 0; shard < this.index.shardCount; shard++) {
      while ((await this.index.sweepUploads(shard, uploadWindowSeconds, 10_000)) === 10_000);
      // First finish what an earlier run left half-done: those blocks were settled when marked.
      for (const hash of await this.index.deleting(shard, 10_000)) await this.remove(hash, result);
      if (window.paused) continue;
      for (;;) {
        const batch = await this.index.collectable(shard, graceSeconds, window.settledMs, BATCH);
        result.candidates += batch.length;
        this.metrics.gcCandidates.inc(batch.length);
        let marked = 0;
        for (const hash of batch) {
          const record = await this.index.get(hash);
          if (!record) continue;
          if (this.nodesDown(record)) {
            result.awaitingNodes++;
            continue;
          }
          // Reserved, referenced or zeroed again meanwhile: the row lock decides.
          if (!(await this.index.beginDelete(hash, graceSeconds, window.settledMs))) continue;
          marked++;
          await this.remove(hash, result);
        }
        if (batch.length < BATCH || marked === 0) break;
      }
      result.awaitingRelay += await this.index.awaitingRelay(shard, graceSeconds, window.settledMs);
    }
    this.metrics.gcAwaiting.set({ reason: "relay" }, result.awaitingRelay);
    this.metrics.gcAwaiting.set({ reason: "nodes" }, result.awaitingNodes);
    if (result.blocksDeleted > 0) this.logger.info(result, "garbage collection deleted blocks");
    return result;
  }

  /**
   * A node that is down (not dead) holds a shard: deleting would wait for its timeout and leave the
   * block 'deleting' until it answers. A dead node's shards are gone already.
   */
  private nodesDown(record: BlockRecord): boolean {
    const nodes = this.shards.nodes;
    return record.shards.some((p) => !nodes.isDead(p.node) && nodes.get(p.node)?.healthy === false);
  }

  private async remove(hash: Buffer, result: CollectionResult): Promise<void> {
    const record = await this.index.get(hash);
    if (!record || record.state !== "deleting") return;
    // A node went down after the block was marked: a later run finishes it once the node answers.
    if (this.nodesDown(record)) return;
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
