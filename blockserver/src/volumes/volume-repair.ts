import type { Logger } from "@satchel/proto";
import type { BlockIndex } from "../block-index/block-index.js";
import type { SegmentRecord } from "../block-index/volume-index.js";
import type { NodeSet } from "../nodes/node-set.js";
import { ShardMissingError } from "../nodes/storage-node.js";
import { scanRecords } from "../volume-format/record.js";
import { segmentKey } from "./volume-store.js";

/** What a copy of a segment was found to be: whole, absent or damaged (proof), or unknown (no answer). */
export type CopyState = "sound" | "absent" | "damaged" | "unknown";

/** Segments a repair pass takes at most; segments a scrub reads per page. */
const REPAIR_BATCH = 100;
const SCRUB_PAGE = 200;

/**
 * Keeps every segment of an open volume at its full copies: a scrub reads each copy and records
 * the ones proven absent or damaged as missing (a copy whose node does not answer proves nothing
 * and is left alone); a repair copies each missing copy from a sound one, checked record by record
 * before it is written, and clears it with compare-and-set. Reads report the copies they found bad.
 */
export class VolumeRepairer {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;

  constructor(
    private readonly index: BlockIndex,
    private readonly nodes: NodeSet,
    private readonly logger: Logger,
  ) {}

  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => void this.kick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One repair pass unless one is running; resolves when it is done. */
  kick(): Promise<unknown> {
    this.running ??= this.repairPass().catch((err: Error) => this.logger.warn({ err: err.message }, "volume repair pass failed; it will run again")).finally(() => (this.running = undefined));
    return this.running;
  }

  /** What one copy of a segment holds: the object, and whether it is all sound records of the segment's length. */
  async inspectCopy(segment: SegmentRecord, node: string): Promise<{ state: CopyState; bytes?: Buffer; detail?: string }> {
    const storage = this.nodes.get(node);
    if (!storage) return { state: "unknown", detail: `${node} is not a storage node` };
    try {
      const bytes = await storage.get(segmentKey(segment.volumeId, segment.start));
      const scan = scanRecords(bytes);
      if (bytes.length !== segment.length) return { state: "damaged", detail: `${bytes.length} bytes, the segment has ${segment.length}` };
      if (scan.problem || scan.soundUpTo !== segment.length) return { state: "damaged", detail: scan.problem?.message ?? `sound records end at ${scan.soundUpTo}` };
      return { state: "sound", bytes };
    } catch (err) {
      if (err instanceof ShardMissingError) return { state: "absent", detail: err.message };
      return { state: "unknown", detail: (err as Error).message };
    }
  }

  /** Reads every copy of one segment not already missing, and records the absent and damaged ones. Returns them. */
  async scrubSegment(segment: SegmentRecord): Promise<string[]> {
    const volume = await this.index.volumes.get(segment.volumeId);
    if (!volume) return [];
    const checked = await Promise.all(volume.replicas.filter((n) => !segment.missing.includes(n)).map(async (n) => ({ n, ...(await this.inspectCopy(segment, n)) })));
    const bad = checked.filter((c) => c.state === "absent" || c.state === "damaged");
    if (bad.length > 0) {
      await this.reportBad(segment, bad.map((c) => c.n));
      this.logger.warn({ volume: segment.volumeId, start: segment.start, copies: bad.map((c) => `${c.n}: ${c.detail}`) }, "volume segment copies absent or damaged; queued for repair");
    }
    return bad.map((c) => c.n);
  }

  /** Scrubs every segment of every volume once. */
  async scrubPass(): Promise<{ segments: number; bad: number }> {
    let after = { volumeId: 0, start: -1 };
    let segments = 0;
    let bad = 0;
    for (;;) {
      const page = await this.index.volumes.segmentPage(after, SCRUB_PAGE);
      if (page.length === 0) return { segments, bad };
      for (const s of page) {
        segments++;
        bad += (await this.scrubSegment(s)).length;
      }
      after = page.at(-1)!;
    }
  }

  /** Records copies of a segment found absent or damaged (by a scrub or a read) as missing. */
  async reportBad(segment: SegmentRecord, copies: string[]): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = (await this.index.volumes.segmentAt(segment.volumeId, segment.start))?.missing ?? [];
      if (copies.every((c) => current.includes(c))) return;
      if (await this.index.volumes.setMissing(segment, current, [...current, ...copies])) return;
    }
  }

  /** Copies every missing copy of up to REPAIR_BATCH segments from a sound one. Returns the copies restored. */
  async repairPass(): Promise<number> {
    let restored = 0;
    for (const segment of await this.index.volumes.segmentsMissingCopies(REPAIR_BATCH)) {
      const volume = await this.index.volumes.get(segment.volumeId);
      if (!volume) continue;
      let source: Buffer | undefined;
      for (const n of volume.replicas.filter((r) => !segment.missing.includes(r))) {
        const copy = await this.inspectCopy(segment, n);
        if (copy.state === "sound") {
          source = copy.bytes;
          break;
        }
      }
      if (!source) {
        this.logger.warn({ volume: segment.volumeId, start: segment.start }, "no sound copy of a volume segment answered; its repair waits");
        continue;
      }
      const fixed: string[] = [];
      for (const n of segment.missing) {
        const node = this.nodes.get(n);
        if (!node?.healthy) continue;
        try {
          await node.put(segmentKey(segment.volumeId, segment.start), [source]);
          fixed.push(n);
        } catch (err) {
          this.logger.warn({ volume: segment.volumeId, start: segment.start, node: n, err: (err as Error).message }, "could not restore a volume segment copy; it will be tried again");
        }
      }
      if (fixed.length > 0 && (await this.index.volumes.setMissing(segment, segment.missing, segment.missing.filter((n) => !fixed.includes(n))))) restored += fixed.length;
    }
    return restored;
  }
}
