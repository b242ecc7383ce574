import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "@satchel/proto";
import type { RepairSink } from "../block-store.js";
import type { ErasureCodec } from "../codec/erasure.js";
import type { ShardIO, ShardSurvey } from "../shard-io/shard-io.js";
import { isStored, type BlockIndex, type BlockRecord, type RepairClaim, type ShardPlacement } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import { blockVerdict, type BlockVerdict } from "../quorum.js";
import { repairRetryDelayMs } from "./backoff.js";
import { rebuiltShardsDecode } from "./rebuild-check.js";

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
  /**
   * Another repairer holds the block (it took this one's claim over, or held it already): this one
   * recorded nothing more and leaves the queue entry to it.
   */
  elsewhere?: boolean;
}

/** Blocks repaired at once. */
const CONCURRENCY = 4;
/** Due repairs fetched from the queue per round. */
const BATCH = 64;
/**
 * How long a claim on a block lasts without renewal: a repairer that crashed or hung loses its
 * blocks to another after this. While a repair runs, a heartbeat renews its claim every third of
 * the lease, so a slow survey or write (node timeouts) does not lose it.
 */
export const REPAIR_LEASE_SECONDS = 15;
const HEARTBEAT_MS = (REPAIR_LEASE_SECONDS * 1000) / 3;

/** Who holds a claim, for operators reading the queue: host, process and a per-repairer tag. */
const defaultHolder = () => `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`.slice(0, 64);

/**
 * Rebuilds missing and corrupt shards from the good ones and writes them back: to the node that
 * should hold them when it answers, otherwise (its node marked dead) to another node holding no
 * other shard of the block. The queue is a table in the block index, so a restart loses no pending
 * repair; blocks arrive from reads (heal on read), writes below full redundancy, the scrubber, nodes
 * coming back or returning with a new disk, and a periodic sweep of shard states. A repair that
 * cannot finish (a node still down) is retried with back-off.
 *
 * Any number of repairers (blockserver processes) share the queue. Each claims a block before it
 * changes anything (RepairClaim): only the holder of the current claim records shards, marks the
 * block verified or lost, and finishes or retries the entry, so two repairers never both rebuild a
 * block, and one that stalls past its lease and was taken over changes nothing when it wakes.
 */
export class Repairer implements RepairSink {
  private timer?: NodeJS.Timeout;
  private draining?: Promise<void>;
  private again = false;
  private stopped = false;
  /** Claims held by repairs running now, renewed by the heartbeat. */
  private readonly held = new Set<RepairClaim>();
  private heartbeat?: NodeJS.Timeout;

  constructor(
    private readonly shards: ShardIO,
    private readonly codec: ErasureCodec,
    private readonly index: BlockIndex,
    private readonly metrics: BlockserverMetrics,
    private readonly logger: Logger,
    readonly holder: string = defaultHolder(),
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
    // Claims still held run out with their lease; the repairs they guard stop at their next step.
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /** Keeps a claim alive while its repair runs; the returned function lets it go. */
  private keepAlive(claim: RepairClaim): () => void {
    this.held.add(claim);
    if (!this.heartbeat && !this.stopped) {
      this.heartbeat = setInterval(() => {
        // A claim taken over is not renewed (the renewal names its generation); its repair finds out
        // at its next conditional write.
        for (const c of this.held) void this.index.renewRepairClaim(c, REPAIR_LEASE_SECONDS).catch(() => undefined);
      }, HEARTBEAT_MS);
      this.heartbeat.unref();
    }
    return () => {
      this.held.delete(claim);
      if (this.held.size === 0) {
        clearInterval(this.heartbeat);
        this.heartbeat = undefined;
      }
    };
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
    // Another repairer may have claimed it since the queue was read: then it is that one's.
    const claim = await this.index.claimRepair(hash, this.holder, REPAIR_LEASE_SECONDS).catch((err: Error) => {
      this.logger.warn({ block: hash.toString("hex"), err: err.message }, "could not claim a repair; it stays queued");
      return undefined;
    });
    if (!claim) return;
    await this.settled(claim, attempts, () => this.repair(hash, claim));
  }

  /**
   * Runs a claimed repair and settles its queue entry: finished when nothing is left to do here,
   * otherwise retried with back-off. A repair taken over leaves the entry to the new holder.
   */
  private async settled(claim: RepairClaim, attempts: number, work: () => Promise<RepairResult>): Promise<RepairResult | undefined> {
    const release = this.keepAlive(claim);
    try {
      const result = await work();
      if (result.elsewhere) return result;
      if (result.complete || result.lost || result.waitsForNodes) await this.index.finishRepair(claim);
      else await this.index.retryRepair(claim, repairRetryDelayMs(attempts), `${result.verdict}: ${result.rebuilt} of ${result.damaged} damaged shards rebuilt`);
      return result;
    } catch (err) {
      this.logger.warn({ block: claim.hash.toString("hex"), err: (err as Error).message }, "repair failed; it will be retried");
      await this.index.retryRepair(claim, repairRetryDelayMs(attempts), (err as Error).message).catch(() => undefined);
      return undefined;
    } finally {
      release();
    }
  }

  async repair(hash: Buffer, claim: RepairClaim): Promise<RepairResult> {
    const record = await this.index.get(hash);
    if (!record || record.state !== "live") return { damaged: 0, rebuilt: 0, lost: false, complete: true, waitsForNodes: false, verdict: "readable" };
    return this.rebuild(record, await this.shards.survey(record), claim);
  }

  /**
   * Records what a survey of the block's shards found, then rebuilds every shard that is not stored
   * (or sits on a node marked dead) when k good shards exist. Shards whose node is down wait for it.
   * Without a claim (the scrubber's survey), a block with nothing to change is only marked verified;
   * otherwise the block is claimed and then repaired from a fresh look (the survey was taken before
   * the claim: another repairer may have moved shards since), or left alone if another holds it.
   */
  async rebuild(record: BlockRecord, survey: ShardSurvey[], claim?: RepairClaim): Promise<RepairResult> {
    if (claim) return this.rebuildClaimed(record, survey, claim);
    const verdict = blockVerdict(survey, record.dataShards, record.parityShards);
    const nothingToDo = verdict.kind === "readable" && this.findings(record, survey).length === 0 &&
      survey.every((s) => s.status === "ok" && !this.shards.nodes.isDead(s.node));
    if (nothingToDo) {
      await this.index.markVerified(record.hash);
      return { damaged: 0, rebuilt: 0, lost: false, complete: true, waitsForNodes: false, verdict: verdict.kind };
    }
    const own = await this.index.claimRepairNow(record.hash, this.holder, "scrub found damage", REPAIR_LEASE_SECONDS);
    if (!own) return { damaged: 0, rebuilt: 0, lost: false, complete: false, waitsForNodes: false, verdict: verdict.kind, elsewhere: true };
    const result = await this.settled(own, 0, () => this.repair(record.hash, own));
    return result ?? { damaged: 0, rebuilt: 0, lost: false, complete: false, waitsForNodes: false, verdict: verdict.kind };
  }

  private async rebuildClaimed(record: BlockRecord, survey: ShardSurvey[], claim: RepairClaim): Promise<RepairResult> {
    const hex = record.hash.toString("hex");
    const k = record.dataShards;
    const verdict = blockVerdict(survey, k, record.parityShards);
    if (!(await this.recordFindings(record, survey, claim))) return this.takenOver(claim, verdict.kind);
    const nodes = this.shards.nodes;
    const needed = survey.filter((s) => s.status !== "ok" || nodes.isDead(s.node)).map((s) => s.index);
    const damaged = survey.filter((s) => s.status !== "ok").length;
    if (verdict.kind === "lost") {
      this.metrics.repairs.inc({ result: "lost" });
      await this.index.markLost(claim);
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
      await this.index.markVerified(record.hash, claim);
      return { damaged: 0, rebuilt: 0, lost: false, complete: true, waitsForNodes: false, verdict: verdict.kind };
    }
    const all = await this.codec.reconstructShards(survey.map((s) => s.payload), record.size);
    if (!(await rebuiltShardsDecode(this.codec, all, needed, record.size, record.hash))) {
      // Some shard passed its checksum with wrong bytes: what was rebuilt from it is wrong too, and
      // writing it would overwrite (or add to) good shards with bad ones. Nothing is written.
      this.metrics.rebuildsRejected.inc();
      this.logger.error({ block: hex, shards: needed }, "rebuilt shards do not decode to the block hash; nothing written");
      return { damaged, rebuilt: 0, lost: false, complete: false, waitsForNodes: false, verdict: verdict.kind };
    }
    return this.rewrite(record, needed, all, damaged, claim);
  }

  /**
   * An upload brought a live block's bytes (encoded into `shards`, from bytes that hash to it): rewrite
   * every shard the index does not record as stored, or every shard of a block recorded lost (what
   * the index still calls stored is not to be trusted there), under a claim like any repair. Returns
   * whether the block is readable from what is stored now; false also when another repairer holds it.
   */
  async restore(seen: BlockRecord, shards: Buffer[]): Promise<boolean> {
    const claim = await this.index.claimRepairNow(seen.hash, this.holder, "an upload brought the bytes", REPAIR_LEASE_SECONDS);
    if (!claim) {
      // Being repaired right now: that repair finishes the job (a lost block's uploader is told to retry).
      if (!seen.lost) this.enqueue(seen.hash, "an upload found shards not stored");
      return false;
    }
    // Read again under the claim: a repair that finished just before it may have moved shards.
    const record = await this.index.get(seen.hash);
    if (!record || record.state !== "live") {
      await this.index.finishRepair(claim);
      return false;
    }
    const nodes = this.shards.nodes;
    const needed = record.shards.filter((p) => record.lost || !isStored(p.state) || nodes.isDead(p.node)).map((p) => p.index);
    const result = await this.settled(claim, 0, async () => {
      const r = await this.rewrite(record, needed, shards, needed.length, claim);
      const stored = record.shards.filter((p) => isStored(p.state) && !nodes.isDead(p.node)).length;
      // Readable again though not whole (a node is down): no longer lost, so sweeps queue the rest.
      if (record.lost && !r.complete && !r.elsewhere && stored >= record.dataShards) await this.index.clearLost(claim);
      return r;
    });
    if (!result || result.elsewhere) return false;
    return record.shards.filter((p) => isStored(p.state) && !nodes.isDead(p.node)).length >= record.dataShards;
  }

  /**
   * Writes the shards `needed` (payloads in `all`) to their nodes and records them, as the holder
   * of `claim`: the claim is checked (and renewed) before each write and each placement is recorded
   * only while the claim is current, so a repairer taken over stops at its next step.
   */
  private async rewrite(record: BlockRecord, needed: number[], all: Buffer[], damaged: number, claim: RepairClaim): Promise<RepairResult> {
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
      if (!(await this.index.renewRepairClaim(claim, REPAIR_LEASE_SECONDS))) return this.takenOver(claim, "readable", rebuilt);
      const { placement, error } = await this.shards.writeShard(record, i, all[i], target, target === record.shards[i].node ? "ok" : "rebuilt");
      if (error) {
        failed++;
        this.logger.warn({ block: hex, shard: i, node: target, err: error.message }, "rebuilt shard could not be written");
        continue;
      }
      let recorded: boolean;
      try {
        recorded = await this.index.recordRepairedShard(claim, placement);
      } catch (err) {
        failed++;
        this.logger.warn({ block: hex, shard: i, node: target, err: (err as Error).message }, "rebuilt shard could not be recorded");
        continue;
      }
      // The object just written holds the same bytes the new holder writes (or, on another node, is
      // an orphan the orphan sweep removes).
      if (!recorded) return this.takenOver(claim, "readable", rebuilt);
      record.shards[i] = placement;
      rebuilt++;
    }
    const complete = waiting === 0 && failed === 0;
    this.metrics.repairs.inc({ result: complete ? "repaired" : "partial" });
    this.metrics.shardsRebuilt.inc(rebuilt);
    if (complete) await this.index.markVerified(record.hash, claim);
    this.logger.info({ block: hex, damaged, rebuilt, waiting, failed }, "block repaired");
    return { damaged, rebuilt, lost: false, complete, waitsForNodes: !complete && failed === 0, verdict: "readable" };
  }

  /** Another repairer took the block over: this one stops, having recorded `rebuilt` shards. */
  private takenOver(claim: RepairClaim, verdict: BlockVerdict["kind"], rebuilt = 0): RepairResult {
    this.metrics.repairClaimsLost.inc();
    this.metrics.shardsRebuilt.inc(rebuilt);
    this.logger.warn({ block: claim.hash.toString("hex"), generation: claim.generation }, "repair taken over by another repairer; stopping");
    return { damaged: 0, rebuilt, lost: false, complete: false, waitsForNodes: false, verdict, elsewhere: true };
  }

  /**
   * What the survey learnt that the index does not say yet: the index is a hint kept as fresh as we
   * can. A shard on a node known to be down is recorded unreachable even though it was not tried: a
   * repair that waits for the node leaves the queue, and the node's return re-checks only shards
   * recorded as not stored (a new disk adopted just before its node died held none of them).
   */
  private findings(record: BlockRecord, survey: ShardSurvey[]): ShardPlacement[] {
    const nodes = this.shards.nodes;
    const out: ShardPlacement[] = [];
    for (const s of survey) {
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
      if (now !== was) out.push(now);
    }
    return out;
  }

  /** Records the survey's findings as the holder of `claim`; false when the claim was taken over. */
  private async recordFindings(record: BlockRecord, survey: ShardSurvey[], claim: RepairClaim): Promise<boolean> {
    const found = this.findings(record, survey);
    const recorded = await Promise.all(found.map((p) => this.index.recordRepairedShard(claim, p)));
    if (recorded.includes(false)) return false;
    for (const p of found) record.shards[p.index] = p;
    return true;
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
