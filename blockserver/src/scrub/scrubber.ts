import type { Logger } from "@satchel/proto";
import type { BlockStore } from "../block-store.js";
import type { ShardIO } from "../shard-io/shard-io.js";
import type { BlockIndex } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import type { Repairer } from "../repair/repairer.js";

export interface ScrubSettings {
  /** Shard bytes read per second at most. */
  rateBytesPerSecond: number;
  /** Pause between the end of one pass and the start of the next. */
  idleMs: number;
  /** Longest a block waits for foreground traffic to go quiet before it is scrubbed anyway. */
  maxYieldMs: number;
}

export interface ScrubPassStatus {
  running: boolean;
  passesCompleted: number;
  blocksVerified: number;
  bytesVerified: number;
  blocksTotal: number;
  rateLimit: number;
  rate: number;
  shardsMissing: number;
  shardsCorrupt: number;
  shardsRepaired: number;
  blocksLost: number;
  lastPassFinished: number;
  lastPassSeconds: number;
}

const PAGE = 200;
const ZERO_HASH: Buffer = Buffer.alloc(32);

/**
 * Walks every live block, shard by shard of the index, reading and verifying every shard at a
 * bounded byte rate. It only reports; damage it finds is handed to the repairer, which rebuilds
 * (missing, corrupt, unreachable shards, and every shard on a node marked dead).
 */
export class Scrubber {
  private pass?: Promise<ScrubPassStatus>;
  private nextPass?: Promise<ScrubPassStatus>;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private unthrottled = false;
  private passStarted = 0;
  readonly status: ScrubPassStatus;

  constructor(
    private readonly shards: ShardIO,
    /** Client traffic in progress, which a pass yields to. */
    private readonly foreground: Pick<BlockStore, "foregroundInFlight">,
    private readonly index: BlockIndex,
    private readonly repairer: Repairer,
    private readonly metrics: BlockserverMetrics,
    private readonly logger: Logger,
    private readonly settings: ScrubSettings,
  ) {
    this.status = {
      running: false, passesCompleted: 0, blocksVerified: 0, bytesVerified: 0, blocksTotal: 0,
      rateLimit: settings.rateBytesPerSecond, rate: 0, shardsMissing: 0, shardsCorrupt: 0,
      shardsRepaired: 0, blocksLost: 0, lastPassFinished: 0, lastPassSeconds: 0,
    };
  }

  /** Runs passes continuously: one pass, an idle pause, the next. */
  start(): void {
    const loop = async () => {
      if (this.stopped) return;
      await this.runPass(false);
      if (!this.stopped) this.timer = setTimeout(() => void loop(), this.settings.idleMs);
    };
    this.timer = setTimeout(() => void loop(), this.settings.idleMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /**
   * Starts a pass; resolves, with that pass's final status, when a pass that began after this call
   * ends. A pass already running may have walked past blocks before whatever prompted this call (a
   * node marked dead), so the requested pass follows it. The status is a copy taken as the pass
   * ends: the next pass (the background loop's) resets the live one.
   */
  runPass(unthrottled: boolean): Promise<ScrubPassStatus> {
    if (this.pass) {
      if (unthrottled) this.unthrottled = true;
      this.nextPass ??= this.pass.then(() => {
        this.nextPass = undefined;
        return this.runPass(unthrottled);
      });
      return this.nextPass;
    }
    if (unthrottled) this.unthrottled = true;
    this.pass = this.walk().then(() => ({ ...this.status })).finally(() => {
      this.pass = undefined;
      this.unthrottled = false;
    });
    return this.pass;
  }

  private async walk(): Promise<void> {
    const s = this.status;
    Object.assign(s, { running: true, blocksVerified: 0, bytesVerified: 0, shardsMissing: 0, shardsCorrupt: 0, shardsRepaired: 0, blocksLost: 0, rate: 0 });
    this.passStarted = performance.now();
    try {
      s.blocksTotal = await this.index.liveCount();
      for (let shard = 0; shard < this.index.shardCount && !this.stopped; shard++) {
        let after = ZERO_HASH;
        for (;;) {
          const page = await this.index.livePage(shard, after, PAGE);
          for (const hash of page) {
            if (this.stopped) return;
            await this.yieldToForeground();
            await this.scrubBlock(hash);
          }
          if (page.length < PAGE) break;
          after = page[page.length - 1];
        }
      }
      s.passesCompleted++;
      s.lastPassFinished = Math.floor(Date.now() / 1000);
      s.lastPassSeconds = (performance.now() - this.passStarted) / 1000;
      this.metrics.scrubPasses.inc();
      this.metrics.scrubLastPass.set(s.lastPassFinished);
      this.logger.info({ blocks: s.blocksVerified, bytes: s.bytesVerified, missing: s.shardsMissing, corrupt: s.shardsCorrupt, repaired: s.shardsRepaired, lost: s.blocksLost, seconds: s.lastPassSeconds }, "scrub pass finished");
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "scrub pass stopped early; the next pass starts over");
    } finally {
      s.running = false;
    }
  }

  private async scrubBlock(hash: Buffer): Promise<void> {
    const record = await this.index.get(hash);
    if (!record || record.state !== "live") return;
    const started = performance.now();
    const survey = await this.shards.survey(record);
    let bytes = 0;
    for (const r of survey) {
      bytes += r.bytes ?? 0;
      if (r.problem === "corrupt") {
        this.status.shardsCorrupt++;
        this.metrics.scrubFindings.inc({ kind: "corrupt" });
      } else if (r.problem === "absent") {
        this.status.shardsMissing++;
        this.metrics.scrubFindings.inc({ kind: "missing" });
      } else if (r.status === "unreachable") {
        this.metrics.scrubFindings.inc({ kind: "unreachable" });
      } else if (this.shards.nodes.isDead(r.node)) {
        this.status.shardsMissing++;
        this.metrics.scrubFindings.inc({ kind: "dead_node" });
      }
    }
    const result = await this.repairer.rebuild(record, survey);
    this.status.shardsRepaired += result.rebuilt;
    if (result.lost) this.status.blocksLost++;
    // A rewrite that failed on a node that answers is retried from the durable queue; shards whose
    // node is down wait for it (it re-checks them when it is back).
    else if (!result.complete && !result.waitsForNodes) this.repairer.enqueue(hash, "scrub: a rebuilt shard could not be written");
    this.status.blocksVerified++;
    this.status.bytesVerified += bytes;
    this.metrics.scrubBlocks.inc();
    this.metrics.scrubBytes.inc(bytes);
    const elapsed = (performance.now() - this.passStarted) / 1000;
    this.status.rate = elapsed > 0 ? this.status.bytesVerified / elapsed : 0;
    this.metrics.scrubProgress.set(this.status.blocksTotal ? this.status.blocksVerified / this.status.blocksTotal : 1);
    // Rate limit: this block may take no less than bytes / rate seconds.
    if (!this.unthrottled && this.settings.rateBytesPerSecond > 0) {
      const minimumMs = (bytes / this.settings.rateBytesPerSecond) * 1000;
      const spent = performance.now() - started;
      if (minimumMs > spent) await sleep(minimumMs - spent);
    }
  }

  /** Foreground reads and writes go first: wait (bounded) while any are in flight. */
  private async yieldToForeground(): Promise<void> {
    if (this.unthrottled) return;
    const deadline = performance.now() + this.settings.maxYieldMs;
    while (this.foreground.foregroundInFlight > 0 && performance.now() < deadline) await sleep(5);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
