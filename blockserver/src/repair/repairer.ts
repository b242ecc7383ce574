import type { Logger } from "@satchel/proto";
import type { RepairSink } from "../block-store.js";
import type { ErasureCodec } from "../codec/erasure.js";
import type { ShardIO, ShardSurvey } from "../shard-io/shard-io.js";
import { isStored, type BlockIndex, type BlockRecord, type ShardPlacement } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import { blockVerdict, type BlockVerdict } from "../quorum.js";
import { repairRetryDelayMs } from "./backoff.js";

export interface RepairResult {
  /** Shards found missing, corrupt or unreachable. */
  damaged: number;
  /** Shards rewritten. */
  rebuilt: number;
  /** More than m shards are proven gone: the block cannot be rebuilt. */
  lost: boolean;
  /** Every shard is stored on a node that is not dead: nothing is left to do. */
  complete: boolean;
  /**
   * What is left waits only for nodes that are down now: the block leaves the queue, and comes
   * back when one of them does (nodeBack) or the shard-state sweep sees it up.
   */
  waitsForNodes: boolean;
  verdict: BlockVerdict["kind"];
}

/** Blocks repaired at once. */
const CONCURRENCY = 4;
/** Due repairs fetched from the queue per round. */
const BATCH = 64;

/**
 * Rebuilds missing and corrupt shards from the good ones and writes them back: to the node that
 * should hold them when it answers, otherwise (its node marked dead) to another node holding no
 * other shard of the block. The queue is a table in the block index, so a restart loses no pending
 * repair; blocks arrive from reads (heal on read), writes below full redundancy, the scrubber, nodes
 * coming back or returning with a new disk, and a periodic sweep of shard states. A repair that
 * cannot finish (a node still down) is retried with back-off.
 */
export class Repairer implements RepairSink {
  private timer?: NodeJS.Timeout;
  private draining?: Promise<void>;
  private again = false;
  private stopped = false;

  constructor(
    private readonly shards: ShardIO,
    private readonly codec: ErasureCodec,
    private readonly index: BlockIndex,
    private readonly metrics: BlockserverMetrics,
    private readonly logger: Logger,
  ) {}

  enqueue(hash: Buffer, reason: string): void {
    this.metrics.repairsQueued.inc();
    this.logger.debug({ block: hash.toString("hex"), reason }, "repair queued");
    void this.index.queueRepair([hash], reason).then(
      () => this.kick(),
      (err: Error) => this.logger.warn({ block: hash.toString("hex"), err: err.message }, "could not queue a repair; the shard-state sweep will find it"),
    );
  }

  /** A node answers again: re-check the shards recorded against it that were not stored. */
  async nodeBack(node: string): Promise<void> {
    const n = await this.index.queueBlocksOnNode(node, `${node} is back`, true);
    this.logger.info({ node, blocks: n }, "storage node back: re-checking its shards");
    this.kick();
  }

  /**
   * A node answers with a new, empty disk: every shard recorded on it must be rebuilt there. The
   * queue is written before the disk is adopted (its identity written), so a crash in between only
   * means the next probe finds the disk new again. A second look after `settleMs` catches blocks
   * whose writes were in flight during the first.
   */
  async diskReplaced(node: string, adopt: () => Promise<void>, settleMs: number): Promise<void> {
    const n = await this.index.queueBlocksOnNode(node, `${node} has a new disk`, false);
    if (n > 0) this.logger.warn({ node, blocks: n }, "storage node has a new disk: rebuilding its shards");
    await adopt();
    this.kick();
    const again = setTimeout(() => void this.index.queueBlocksOnNode(node, `${node} has a new disk`, false).then(
      () => this.kick(),
      (err: Error) => this.logger.warn({ node, err: err.message }, "second look at a new disk failed; the scrubber will find the rest"),
    ), settleMs);
    again.unref();
  }

  /** Sweeps the index for shards not recorded as stored, and drains the queue, every intervalMs. */
  start(intervalMs: number): void {
    this.sweepNow();
    this.timer = setInterval(() => this.sweepNow(), intervalMs);
    this.timer.unref();
  }

  sweepNow(): void {
    // Shards recorded against nodes that are down wait for them; the sweep picks them up once up.
    const down = this.shards.nodes.names.filter((n) => !this.shards.nodes.get(n)!.healthy);
    void this.index.queueUnhealthyBlocks("shard-state sweep", down).then(
      () => this.kick(),
      (err: Error) => this.logger.warn({ err: err.message }, "repair sweep failed"),
    );
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Drains the due part of the queue now; resolves when the queue has nothing due. */
  kick(): Promise<void> {
    if (this.draining) {
      this.again = true;
      return this.draining;
    }
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.kick();
      }
    });
    return this.draining;
  }

  private async drain(): Promise<void> {
    // Each block once per drain: a task whose retry could not be recorded stays due, and must not
    // make this loop spin.
    const seen = new Set<string>();
    try {
      for (;;) {
        if (this.stopped) return;
        const due = (await this.index.dueRepairs(BATCH)).filter((t) => !seen.has(t.hash.toString("hex")));
        this.metrics.repairQueueLength.set(await this.index.repairQueueLength());
        if (due.length === 0) return;
        for (const t of due) seen.add(t.hash.toString("hex"));
        let next = 0;
        await Promise.all(Array.from({ length: Math.min(CONCURRENCY, due.length) }, async () => {
          while (next < due.length && !this.stopped) {
            const task = due[next++];
            await this.runTask(task.hash, task.attempts);
          }
        }));
      }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "repair queue could not be read; retrying on the next sweep");
    }
  }

  private async runTask(hash: Buffer, attempts: number): Promise<void> {
    const hex = hash.toString("hex");
    try {
      const result = await this.repair(hash);
      if (result.complete || result.lost || result.waitsForNodes) {
        await this.index.finishRepair(hash);
        return;
      }
      await this.index.retryRepair(hash, repairRetryDelayMs(attempts), `${result.verdict}: ${result.rebuilt} of ${result.damaged} damaged shards rebuilt`);
    } catch (err) {
      this.logger.warn({ block: hex, err: (err as Error).message }, "repair failed; it will be retried");
      await this.index.retryRepair(hash, repairRetryDelayMs(attempts), (err as Error).message).catch(() => undefined);
    }
  }

  async repair(hash: Buffer): Promise<RepairResult> {
    const record = await this.index.get(hash);
    if (!record || record.state !== "live") return { damaged: 0, rebuilt: 0, lost: false, complete: true, waitsForNodes: false, verdict: "readable" };
    return this.rebuild(record, await this.shards.survey(record));
  }

  /**
   * Records what a survey of the block's shards found, then rebuilds every shard that is not stored
   * (or sits on a node marked dead) when k good shards exist. Shards whose node is down wait for it.
   */
  async rebuild(record: BlockRecord, survey: ShardSurvey[]): Promise<RepairResult> {
    const hex = record.hash.toString("hex");
    const k = record.dataShards;
    await this.recordFindings(record, survey);
    const verdict = blockVerdict(survey, k, record.parityShards);
    const nodes = this.shards.nodes;
    const needed = survey.filter((s) => s.status !== "ok" || nodes.isDead(s.node)).map((s) => s.index);
    const damaged = survey.filter((s) => s.status !== "ok").length;
    if (verdict.kind === "lost") {
      this.metrics.repairs.inc({ result: "lost" });
      await this.index.markLost(record.hash);
      this.logger.error({ block: hex, good: verdict.good, gone: verdict.gone, needed: k }, "block lost: more than m shards are proven gone");
      return { damaged, rebuilt: 0, lost: true, complete: false, waitsForNodes: false, verdict: verdict.kind };
    }
    if (verdict.kind === "unavailable") {
      this.metrics.repairs.inc({ result: "unavailable" });
      this.logger.warn({ block: hex, good: verdict.good, unreachable: verdict.unreachableNodes }, "block cannot be repaired until its nodes are back");
      // Only nodes that are down now can help: wait for them rather than retry on a timer.
      const waitsForNodes = verdict.unreachableNodes.length > 0 && verdict.unreachableNodes.every((n) => !nodes.get(n)?.healthy);
      return { damaged, rebuilt: 0, lost: false, complete: false, waitsForNodes, verdict: verdict.kind };
    }
    if (needed.length === 0) {
      await this.index.markVerified(record.hash);
      return { damaged: 0, rebuilt: 0, lost: false, complete: true, waitsForNodes: false, verdict: verdict.kind };
    }
    const all = await this.codec.reconstructShards(survey.map((s) => s.payload), record.size);
    return this.rewrite(record, needed, all, damaged);
  }

  /**
   * An upload brought a live block's bytes (encoded into `shards`): rewrite every shard the index
   * does not record as stored, so a block that lost shards, even one proven lost, is whole again.
   */
  async restore(record: BlockRecord, shards: Buffer[]): Promise<void> {
    const needed = record.shards.filter((p) => !isStored(p.state) || this.shards.nodes.isDead(p.node)).map((p) => p.index);
    const result = await this.rewrite(record, needed, shards, needed.length);
    if (result.complete) await this.index.finishRepair(record.hash);
  }

  /** Writes the shards `needed` (payloads in `all`) to their nodes and records them. */
  private async rewrite(record: BlockRecord, needed: number[], all: Buffer[], damaged: number): Promise<RepairResult> {
    const hex = record.hash.toString("hex");
    let rebuilt = 0;
    let waiting = 0;
    let failed = 0;
    for (const i of needed) {
      const target = this.chooseNode(record, record.shards[i]);
      if (!target) {
        // Its node is down (not dead): the shard waits for it.
        waiting++;
        continue;
      }
      const { placement, error } = await this.shards.writeShard(record, i, all[i], target, target === record.shards[i].node ? "ok" : "rebuilt");
      if (error) {
        failed++;
        this.logger.warn({ block: hex, shard: i, node: target, err: error.message }, "rebuilt shard could not be written");
        continue;
      }
      try {
        await this.index.setShard(record.hash, placement);
        record.shards[i] = placement;
        rebuilt++;
      } catch (err) {
        failed++;
        this.logger.warn({ block: hex, shard: i, node: target, err: (err as Error).message }, "rebuilt shard could not be recorded");
      }
    }
    const complete = waiting === 0 && failed === 0;
    this.metrics.repairs.inc({ result: complete ? "repaired" : "partial" });
    this.metrics.shardsRebuilt.inc(rebuilt);
    if (complete) await this.index.markVerified(record.hash);
    this.logger.info({ block: hex, damaged, rebuilt, waiting, failed }, "block repaired");
    return { damaged, rebuilt, lost: false, complete, waitsForNodes: !complete && failed === 0, verdict: "readable" };
  }

  /**
   * Writes what the survey learnt back into the index: the index is a hint kept as fresh as we can.
   * A shard on a node known to be down is recorded unreachable even though it was not tried: a
   * repair that waits for the node leaves the queue, and the node's return re-checks only shards
   * recorded as not stored (a new disk adopted just before its node died held none of them).
   */
  private async recordFindings(record: BlockRecord, survey: ShardSurvey[]): Promise<void> {
    const nodes = this.shards.nodes;
    await Promise.all(survey.map(async (s) => {
      const was = record.shards[s.index];
      let now: ShardPlacement = was;
      if (s.status === "ok") {
        if (s.relocated) now = { ...was, node: s.node, state: "rebuilt" };
        else if (!isStored(was.state)) now = { ...was, state: "ok" };
      } else if (s.status === "gone") {
        now = { ...was, state: "gone" };
      } else if (isStored(was.state) && (s.tried || !nodes.get(s.node)?.healthy)) {
        now = { ...was, state: "unreachable" };
      }
      if (now !== was) {
        await this.index.setShard(record.hash, now);
        record.shards[s.index] = now;
      }
    }));
  }

  /**
   * The node a rebuilt shard goes to: its recorded node when it answers and is not dead, else a
   * healthy node holding no other shard of the block (counting every placement, stored or not, so
   * a shard waiting for its own node does not get company). Only when the recorded node is marked
   * dead may two shards share a node (the block is readable again, at reduced independence);
   * otherwise the shard waits for its node.
   */
  private chooseNode(record: BlockRecord, shard: ShardPlacement): string | undefined {
    const nodes = this.shards.nodes;
    const home = nodes.get(shard.node);
    if (home?.healthy && !nodes.isDead(home.name)) return home.name;
    const healthy = nodes.healthyNames().filter((n) => !nodes.isDead(n));
    const load = new Map<string, number>(healthy.map((n) => [n, 0]));
    for (const s of record.shards) if (s.index !== shard.index && load.has(s.node)) load.set(s.node, load.get(s.node)! + 1);
    const unused = healthy.find((n) => load.get(n) === 0);
    if (unused) return unused;
    if (home && !nodes.isDead(home.name)) return undefined;
    return [...load].sort((a, b) => a[1] - b[1])[0]?.[0];
  }
}
