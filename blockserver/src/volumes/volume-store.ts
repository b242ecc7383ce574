import { createHash } from "node:crypto";
import type { Logger } from "@satchel/proto";
import type { BlockRecord } from "../block-index/block-index.js";
import type { BlockIndex } from "../block-index/block-index.js";
import type { PackedBlock } from "../block-index/volume-index.js";
import { dataLoss, unavailable } from "../errors.js";
import type { BlockserverMetrics } from "../metrics.js";
import type { NodeSet } from "../nodes/node-set.js";
import { ShardMissingError } from "../nodes/storage-node.js";
import { rankNodes } from "../placement/rendezvous.js";
import { decodeRecord, encodeRecord, RecordCorruptError, recordLength } from "../volume-format/record.js";
import type { VolumeRepairer } from "./volume-repair.js";

export interface VolumeSettings {
  /** Full copies of an open volume's segments, on distinct nodes; a majority of them makes a segment durable. */
  replicas: number;
  /** How long the first block of a segment waits for others to join it (group commit). */
  windowMs: number;
  /** A segment is written as soon as it holds this many bytes of records. */
  segmentBytes: number;
  /** A volume takes no more segments once it holds this many bytes; the next goes to a new one. */
  targetBytes: number;
  /** Segments written at once (each gathers what arrived while the others were being written). */
  segmentsInFlight: number;
  /** How long a read waits for one replica before it tries the next. */
  readTimeoutMs: number;
}

/** The object of one segment of a volume on each of its replicas. */
export function segmentKey(volumeId: number, start: number): string {
  return `volumes/${volumeId.toString(16).padStart(12, "0")}/${start.toString(16).padStart(12, "0")}`;
}

/** The volume this process appends to; size: where the next segment starts. */
interface OpenVolume {
  volumeId: number;
  replicas: string[];
  size: number;
}

interface Pending {
  hash: Buffer;
  data: Uint8Array;
  done: { resolve: (alreadyStored: boolean) => void; reject: (err: unknown) => void }[];
}

/**
 * Small blocks packed into open volumes (the Magic Pocket model): blocks that arrive within a few
 * milliseconds of each other are appended, as records (volume-format/record.ts), in one segment
 * object written as full copies on the volume's replicas; each block is acknowledged once a
 * majority of the copies is stored and the index points at its record. A block is read with one
 * ranged GET of one copy, verified against its SHA-256. This process appends only to volumes it
 * opened itself (segments are written one at a time, so offsets never collide); another process,
 * or this one after a restart, opens its own.
 */
export class VolumeStore {
  private queue = new Map<string, Pending>();
  private queuedBytes = 0;
  private timer?: NodeJS.Timeout;
  private inFlight = 0;
  private readonly idle: (() => void)[] = [];
  private current?: OpenVolume;
  private opening?: Promise<OpenVolume>;

  constructor(
    private readonly index: BlockIndex,
    private readonly nodes: NodeSet,
    private readonly metrics: BlockserverMetrics,
    private readonly logger: Logger,
    private readonly settings: VolumeSettings,
    /** Told about copies a read proved absent or damaged (heal on read). */
    private readonly repairs?: Pick<VolumeRepairer, "reportBad" | "kick">,
  ) {}

  /** Appends a block (its hash already checked) to the open volume; resolves once it is durable and indexed. */
  put(hash: Buffer, data: Uint8Array): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const key = hash.toString("hex");
      const pending = this.queue.get(key);
      if (pending) {
        pending.done.push({ resolve, reject });
        return;
      }
      this.queue.set(key, { hash, data, done: [{ resolve, reject }] });
      this.queuedBytes += recordLength(data.length);
      if (this.queuedBytes >= this.settings.segmentBytes) this.flushSoon(0);
      else this.flushSoon(this.settings.windowMs);
    });
  }

  private flushSoon(delayMs: number): void {
    if (this.timer && delayMs > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, delayMs);
  }

  /**
   * Starts segments while fewer than `segmentsInFlight` are being written: what arrives meanwhile
   * waits and goes into the next one, taken when one is done (a busy store writes fewer, larger
   * segments).
   */
  private pump(): void {
    while (this.inFlight < this.settings.segmentsInFlight && this.queue.size > 0) {
      const batch = [...this.queue.values()];
      this.queue = new Map();
      this.queuedBytes = 0;
      this.inFlight++;
      void this.writeSegment(batch).finally(() => {
        this.inFlight--;
        this.pump();
        if (this.inFlight === 0) for (const idle of this.idle.splice(0)) idle();
      });
    }
  }

  private async writeSegment(batch: Pending[]): Promise<void> {
    if (batch.length === 0) return;
    const settle = (p: Pending, err: unknown, alreadyStored = false) => {
      for (const d of p.done) {
        if (err) d.reject(err);
        else d.resolve(alreadyStored);
      }
    };
    try {
      const volume = await this.openVolume();
      // The segment's place is taken at once (segments in flight together get consecutive ones); one
      // that fails leaves a gap no block points into.
      const start = volume.size;
      const blocks: PackedBlock[] = [];
      const parts: Buffer[] = [];
      let offset = start;
      for (const p of batch) {
        const [header, payload] = encodeRecord(p.hash, p.data);
        parts.push(header, payload);
        blocks.push({ hash: p.hash, size: p.data.length, offset, recordLength: recordLength(p.data.length) });
        offset += recordLength(p.data.length);
      }
      volume.size = offset;
      const length = offset - start;
      const key = segmentKey(volume.volumeId, start);
      const results = await Promise.all(volume.replicas.map(async (name) => {
        const node = this.nodes.get(name);
        if (!node) return { name, error: new Error(`${name} is not a storage node`) };
        try {
          await node.put(key, parts);
          return { name };
        } catch (err) {
          return { name, error: err as Error };
        }
      }));
      const stored = results.filter((r) => !r.error).map((r) => r.name);
      const quorum = Math.floor(volume.replicas.length / 2) + 1;
      if (stored.length < quorum) {
        // Not durable: nothing points at it; the next batch goes to a new volume on healthier nodes.
        if (this.current === volume) this.current = undefined;
        await Promise.all(stored.map((name) => this.nodes.get(name)!.delete(key).catch(() => undefined)));
        const failures = results.filter((r) => r.error).map((r) => `${r.name}: ${r.error!.message}`).join("; ");
        throw unavailable(`${batch.length} blocks not stored: their volume segment reached ${stored.length} of ${volume.replicas.length} copies, ${quorum} needed (${failures}); retry when the storage nodes are back`);
      }
      const missing = volume.replicas.filter((n) => !stored.includes(n));
      const live = await this.index.volumes.commitSegment({ volumeId: volume.volumeId, start, length, missing }, blocks);
      this.metrics.blockBytes.inc({ direction: "written" }, blocks.reduce((n, b) => n + b.size, 0));
      if (missing.length > 0) this.logger.warn({ volume: volume.volumeId, start, missing }, "volume segment stored below its full copies");
      for (const p of batch) {
        if (live.has(p.hash.toString("hex"))) settle(p, undefined);
        else settle(p, unavailable(`block ${p.hash.toString("hex")} not stored: the index refused its record (the block is being collected?); send it again`));
      }
    } catch (err) {
      for (const p of batch) settle(p, err);
    }
  }

  private openVolume(): Promise<OpenVolume> {
    if (this.current && this.current.size < this.settings.targetBytes) return Promise.resolve(this.current);
    // Segments starting together wait for one new volume, not one each.
    this.opening ??= this.newVolume().finally(() => (this.opening = undefined));
    return this.opening;
  }

  private async newVolume(): Promise<OpenVolume> {
    const names = this.nodes.names;
    if (names.length < this.settings.replicas) throw unavailable(`a volume needs ${this.settings.replicas} storage nodes, ${names.length} are configured`);
    // Healthy nodes first, in rendezvous order of a fresh key, so volumes spread over the nodes.
    const ranked = rankNodes(createHash("sha256").update(`volume ${Date.now()} ${Math.random()}`).digest(), names);
    const replicas = [...ranked.filter((n) => this.nodes.get(n)!.healthy), ...ranked.filter((n) => !this.nodes.get(n)!.healthy)].slice(0, this.settings.replicas);
    const volumeId = await this.index.volumes.open(replicas);
    this.current = { volumeId, replicas, size: 0 };
    this.logger.info({ volume: volumeId, replicas }, "opened a volume");
    return this.current;
  }

  /**
   * A packed block's bytes: one ranged GET of its record from a copy of its segment (healthy copies
   * first), checked against its SHA-256. UNAVAILABLE while no copy answers; DATA_LOSS when every
   * copy answered and none holds the block intact.
   */
  async read(record: BlockRecord): Promise<Buffer> {
    const { hash } = record;
    const hex = hash.toString("hex");
    const place = record.packed!;
    const [volume, segment] = await Promise.all([this.index.volumes.get(place.volumeId), this.index.volumes.segmentAt(place.volumeId, place.offset)]);
    if (!volume || !segment) throw dataLoss(hex, `the index names volume ${place.volumeId} at ${place.offset}, which it does not hold`);
    const copies = volume.replicas.filter((n) => !segment.missing.includes(n));
    const ordered = [...copies.filter((n) => this.nodes.get(n)?.healthy), ...copies.filter((n) => !this.nodes.get(n)?.healthy)];
    const problems: string[] = [];
    const bad: string[] = [];
    let unreachable = 0;
    const healLater = () => {
      if (bad.length === 0 || !this.repairs) return;
      const repairs = this.repairs;
      void repairs.reportBad(segment, bad).then(() => repairs.kick()).catch(() => undefined);
    };
    for (const name of ordered) {
      const node = this.nodes.get(name);
      if (!node) continue;
      try {
        const bytes = await node.getRange(segmentKey(place.volumeId, segment.start), place.offset - segment.start, recordLength(record.size), this.settings.readTimeoutMs);
        const { header, payload } = decodeRecord(bytes);
        if (!header.blockHash.equals(hash) || payload.length !== record.size || !createHash("sha256").update(payload).digest().equals(hash)) {
          problems.push(`${name}: the record there is another block's or damaged`);
          bad.push(name);
          continue;
        }
        this.metrics.blockBytes.inc({ direction: "read" }, payload.length);
        healLater();
        return Buffer.from(payload);
      } catch (err) {
        // A copy that answered without the record proves it absent there; silence proves nothing.
        if (err instanceof RecordCorruptError) {
          problems.push(`${name}: ${err.reason}`);
          bad.push(name);
        } else if (err instanceof ShardMissingError || /answered HTTP 416/.test((err as Error).message)) {
          problems.push(`${name}: the segment is not there`);
          bad.push(name);
        } else {
          // (A 503 may be bitrot or a drive gone offline: not proof, so it counts as silence too.)
          unreachable++;
          problems.push(`${name}: ${(err as Error).message}`);
        }
      }
    }
    healLater();
    if (unreachable > 0 || ordered.length === 0) throw unavailable(`block ${hex} cannot be read now: no copy of its volume segment answered intact (${problems.join("; ") || "no copies"}); retry`);
    throw dataLoss(hex, `every copy of its volume segment was read and none holds it intact (${problems.join("; ")})`);
  }

  /** Writes what is queued now and waits for every segment in flight (shutdown). */
  async drain(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pump();
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
  }
}
