import { createHash } from "node:crypto";
import { NotEnoughShardsError, type ErasureCodec } from "./codec/erasure.js";
import type { BlockserverConfig } from "./config.js";
import { aborted, dataLoss, invalidArgument, notFound, unavailable, type ConnectError } from "./errors.js";
import { isStored, type BlockIndex, type BlockRecord, type ShardPlacement } from "./block-index/block-index.js";
import type { BlockserverMetrics } from "./metrics.js";
import { rankNodes } from "./placement/rendezvous.js";
import { blockVerdict, describeFailures, meetsWriteQuorum, type BlockVerdict, type WriteOutcome } from "./quorum.js";
import type { ShardIO, ShardSurvey } from "./shard-io/shard-io.js";
import type { VolumeStore } from "./volumes/volume-store.js";

export const HASH_BYTES = 32;

/** Where to send blocks whose shards need rebuilding (the repairer). */
export interface RepairSink {
  enqueue(hash: Buffer, reason: string): void;
  /**
   * An upload brought a live block's bytes: rewrite the shards the index does not record as stored
   * (every shard of a block recorded lost). Resolves whether the block is readable from what is stored.
   */
  restore(record: BlockRecord, shards: Buffer[]): Promise<boolean>;
}

/**
 * Content-addressed blocks, erasure-coded across storage nodes. A write is acknowledged once its
 * write quorum of shards is stored and the index says where (see quorum.ts); a read needs any k
 * shards that pass their checksums, and reports the others for repair.
 */
export class BlockStore {
  /** Writes of the same hash in flight in this process share one promise: a block is written once. */
  private readonly writing = new Map<string, Promise<boolean>>();
  /** Client reads and writes in progress; background work (scrub) yields while there are any. */
  foregroundInFlight = 0;

  constructor(
    private readonly config: Pick<BlockserverConfig, "writeQuorum" | "packBelowBytes">,
    private readonly index: BlockIndex,
    private readonly shards: ShardIO,
    private readonly codec: ErasureCodec,
    private readonly repairs: RepairSink,
    private readonly metrics: BlockserverMetrics,
    /** Where blocks below config.packBelowBytes go (and packed blocks are read from). */
    private readonly volumes?: VolumeStore,
  ) {}

  /** Stores a block after checking its hash; returns true when it was already stored (and not lost). */
  async put(hash: Buffer, data: Uint8Array): Promise<boolean> {
    checkHash(hash);
    const actual = createHash("sha256").update(data).digest();
    if (!actual.equals(hash)) {
      throw invalidArgument(`hash mismatch: the ${data.length} bytes sent hash to ${actual.toString("hex")}, not ${hash.toString("hex")}; nothing was stored`);
    }
    const key = hash.toString("hex");
    const inFlight = this.writing.get(key);
    if (inFlight) return inFlight.then(() => true);
    this.foregroundInFlight++;
    const work = this.write(hash, data).finally(() => {
      this.writing.delete(key);
      this.foregroundInFlight--;
    });
    this.writing.set(key, work);
    return work;
  }

  private async write(hash: Buffer, data: Uint8Array): Promise<boolean> {
    const existing = await this.index.get(hash);
    // A packed block is stored once its record is indexed (live); it has no shards to make whole.
    if (existing?.state === "live" && existing.packed) return true;
    if (existing?.state === "live") {
      // The bytes are in hand: a block whose shards are not all stored is made whole from them
      // rather than waiting for repair, and a block proven lost is healed (HasBlocks calls it
      // missing so that its holders upload it). Encoding is deterministic: the shards are the ones
      // the block always had.
      const sameCode = existing.dataShards === this.codec.dataShards && existing.parityShards === this.codec.parityShards;
      const { lost } = existing;
      if (!sameCode || (!lost && existing.shards.every((s) => isStored(s.state)))) return true;
      const readable = await this.repairs.restore(existing, await this.codec.encode(data));
      if (lost && !readable) {
        throw unavailable(`block ${hash.toString("hex")} was lost and its bytes could not be stored again yet (storage nodes down, or a repair of it under way); send it again`);
      }
      return !lost;
    }
    if (existing?.state === "deleting") {
      // Its shards are being removed right now; writing them again would race that removal.
      throw aborted(`block ${hash.toString("hex")} is being garbage-collected; send it again in a moment`);
    }
    if (this.volumes && data.length < this.config.packBelowBytes && existing?.state !== "writing") return this.volumes.put(hash, data);
    const k = this.codec.dataShards;
    const m = this.codec.parityShards;
    const width = k + m;
    await this.index.beginWrite({ hash, size: data.length, dataShards: k, parityShards: m, shardSize: this.codec.shardSizeFor(data.length) });
    const stopEncode = this.metrics.codingSeconds.startTimer({ operation: "encode" });
    const shards = await this.codec.encode(data);
    stopEncode();
    // Healthy nodes first, each group in rendezvous order, so a down node is not chosen while a
    // healthy spare exists.
    const nodes = this.shards.nodes;
    const ranked = rankNodes(hash, nodes.names);
    const targets = [...ranked.filter((n) => nodes.get(n)!.healthy), ...ranked.filter((n) => !nodes.get(n)!.healthy)].slice(0, width);
    const outcome: WriteOutcome = { stored: [], failed: [] };
    const block = { hash, size: data.length, dataShards: k, parityShards: m };
    const placements: ShardPlacement[] = await Promise.all(shards.map(async (payload, i) => {
      const { placement, error } = await this.shards.writeShard(block, i, payload, targets[i]);
      if (error) outcome.failed.push({ index: i, node: targets[i], reason: error.message });
      else outcome.stored.push(i);
      return placement;
    }));
    if (!meetsWriteQuorum(outcome, this.config.writeQuorum)) {
      // The block stays in 'writing': never served, and a retry takes it over. Shards that did land
      // are removed now where possible (the orphan sweep catches the rest).
      await Promise.all(outcome.stored.map((i) => this.shards.deleteShard(hash, i, targets[i]).catch(() => undefined)));
      throw unavailable(
        `block ${hash.toString("hex")} not stored: ${describeFailures(outcome, width)}; ` +
          `${outcome.stored.length} stored, the write quorum is ${this.config.writeQuorum}; retry when the storage nodes are back`,
      );
    }
    if (!(await this.index.commitWrite(hash, placements))) {
      // This write outlived the stale-write bound and its row was swept: what it stored is orphaned.
      throw unavailable(`block ${hash.toString("hex")} not stored: its write took too long and was abandoned; send it again`);
    }
    this.metrics.blockBytes.inc({ direction: "written" }, data.length);
    if (outcome.failed.length > 0) this.repairs.enqueue(hash, "written below full redundancy");
    return false;
  }

  async get(hash: Buffer): Promise<Buffer> {
    checkHash(hash);
    this.foregroundInFlight++;
    try {
      return await this.read(hash);
    } finally {
      this.foregroundInFlight--;
    }
  }

  private async read(hash: Buffer): Promise<Buffer> {
    const record = await this.index.get(hash);
    if (!record || record.state !== "live") {
      throw notFound(`block ${hash.toString("hex")} is not stored`);
    }
    if (record.packed) {
      if (!this.volumes) throw unavailable(`block ${hash.toString("hex")} is packed in a volume and this blockserver reads no volumes`);
      return this.volumes.read(record);
    }
    const k = record.dataShards;
    // Fast path: k shards the index records as stored, data shards first (no decoding when they are
    // all data), each within the hedge deadline. Anything short brings in every other shard.
    const survey = await this.shards.survey(record, { hedged: true, enough: k });
    const good = survey.filter((s) => s.status === "ok");
    if (survey.some((s) => s.tried && s.status !== "ok")) {
      this.metrics.degradedReads.inc();
      this.repairs.enqueue(hash, "read found missing, corrupt or unreachable shards");
    }
    const verdict = blockVerdict(survey, k, record.parityShards);
    if (verdict.kind !== "readable") throw unreadable(hash, k, verdict, survey);
    const shards: (Buffer | undefined)[] = survey.map((s) => s.payload);
    const stopDecode = this.metrics.codingSeconds.startTimer({ operation: "decode" });
    let block: Buffer;
    try {
      block = await this.codec.decode(shards, record.size);
    } catch (err) {
      if (err instanceof NotEnoughShardsError) throw dataLoss(hash.toString("hex"), `only ${good.length} of the ${k} shards needed are readable`);
      throw err;
    } finally {
      stopDecode();
    }
    if (!createHash("sha256").update(block).digest().equals(hash)) {
      throw dataLoss(hash.toString("hex"), "the rebuilt bytes do not match the block hash");
    }
    this.metrics.blockBytes.inc({ direction: "read" }, block.length);
    return block;
  }

  /** Which hashes are stored and live. */
  has(hashes: Buffer[]): Promise<boolean[]> {
    hashes.forEach(checkHash);
    return this.index.live(hashes);
  }
}

export function checkHash(hash: Buffer): void {
  if (hash.length !== HASH_BYTES) throw invalidArgument(`hash must be ${HASH_BYTES} bytes of SHA-256, got ${hash.length}`);
}

/**
 * The status for a block that cannot be read: DATA_LOSS only when more than m shards are proven
 * gone, otherwise UNAVAILABLE (retryable) naming the nodes that did not answer.
 */
export function unreadable(hash: Buffer, k: number, verdict: Exclude<BlockVerdict, { kind: "readable" }>, survey: ShardSurvey[]): ConnectError {
  const hex = hash.toString("hex");
  const findings = survey.filter((s) => s.status !== "ok").map((s) => `shard ${s.index}: ${s.detail}`).join("; ");
  if (verdict.kind === "lost") {
    return dataLoss(hex, `only ${verdict.good} of the ${k} shards needed exist; ${verdict.gone} are proven gone (${findings}). ` +
      "Run `satchel admin verify` to list the files that use it");
  }
  return unavailable(
    `block ${hex} is unavailable: ${verdict.good} of the ${k} shards needed are readable and the nodes holding the others ` +
      `did not answer (${verdict.unreachableNodes.join(", ") || "none"}; ${findings}); its bytes are not known to be lost, retry when they are back`,
  );
}
