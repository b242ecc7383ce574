import { createHash } from "node:crypto";
import { ErasureCodec, NotEnoughShardsError } from "./codec/erasure.js";
import type { BlockserverConfig } from "./config.js";
import { aborted, dataLoss, invalidArgument, notFound, unavailable, type ConnectError } from "./errors.js";
import { isStored, type BlockIndex, type BlockRecord, type ShardPlacement } from "./block-index/block-index.js";
import type { BlockserverMetrics } from "./metrics.js";
import type { NodeSet } from "./nodes/node-set.js";
import { ShardMissingError, ShardUnreadableError } from "./nodes/storage-node.js";
import { rankNodes } from "./placement/rendezvous.js";
import { blockVerdict, describeFailures, meetsWriteQuorum, type BlockVerdict, type ShardFinding, type WriteOutcome } from "./quorum.js";
import { decodeShard, encodeShard, ShardCorruptError } from "./shard-format/shard-format.js";

export const HASH_BYTES = 32;

export const shardKey = (hash: Uint8Array, index: number): string => {
  const hex = Buffer.from(hash).toString("hex");
  return `blocks/${hex.slice(0, 2)}/${hex}.${index}`;
};

/** What seeking one shard found: its verified payload, or what is wrong with it (see quorum.ts). */
export interface ShardSurvey extends ShardFinding {
  index: number;
  payload?: Buffer;
  /** Why a gone shard is gone. */
  problem?: "absent" | "corrupt";
  /** Bytes read from the node. */
  bytes?: number;
  /** A node was asked. */
  tried: boolean;
  /** Found on a node other than the one the index records. */
  relocated?: boolean;
  /** What happened, for logs and error messages. */
  detail: string;
}

/** Where to send blocks whose shards need rebuilding (the repairer). */
export interface RepairSink {
  enqueue(hash: Buffer, reason: string): void;
  /** An upload brought a live block's bytes: rewrite the shards the index does not record as stored. */
  restore(record: BlockRecord, shards: Buffer[]): Promise<void>;
}

/**
 * Content-addressed blocks, erasure-coded across storage nodes. A write is acknowledged once its
 * write quorum of shards is stored and the index says where (see quorum.ts); a read needs any k
 * shards that pass their checksums, and reports the others for repair.
 */
export class BlockStore {
  readonly codec: ErasureCodec;
  /** Writes of the same hash in flight in this process share one promise: a block is written once. */
  private readonly writing = new Map<string, Promise<boolean>>();
  repairs: RepairSink = { enqueue: () => undefined, restore: async () => undefined };
  /** Client reads and writes in progress; background work (scrub) yields while there are any. */
  foregroundInFlight = 0;

  constructor(
    private readonly config: BlockserverConfig,
    private readonly index: BlockIndex,
    readonly nodes: NodeSet,
    private readonly metrics: BlockserverMetrics,
  ) {
    this.codec = new ErasureCodec(config.dataShards, config.parityShards);
  }

  /** Stores a block after checking its hash; returns true when it was already stored. */
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
    if (existing?.state === "live") {
      // The bytes are in hand: a block whose shards are not all stored (even one proven lost) is
      // made whole from them rather than waiting for repair.
      const sameCode = existing.dataShards === this.codec.dataShards && existing.parityShards === this.codec.parityShards;
      if (sameCode && !existing.shards.every((s) => isStored(s.state))) await this.repairs.restore(existing, await this.codec.encode(data));
      return true;
    }
    if (existing?.state === "deleting") {
      // Its shards are being removed right now; writing them again would race that removal.
      throw aborted(`block ${hash.toString("hex")} is being garbage-collected; send it again in a moment`);
    }
    const k = this.codec.dataShards;
    const m = this.codec.parityShards;
    const width = k + m;
    await this.index.beginWrite({ hash, size: data.length, dataShards: k, parityShards: m, shardSize: this.codec.shardSizeFor(data.length) });
    const stopEncode = this.metrics.codingSeconds.startTimer({ operation: "encode" });
    const shards = await this.codec.encode(data);
    stopEncode();
    // Healthy nodes first, each group in rendezvous order, so a down node is not chosen while a
    // healthy spare exists.
    const ranked = rankNodes(hash, this.nodes.names);
    const targets = [...ranked.filter((n) => this.nodes.get(n)!.healthy), ...ranked.filter((n) => !this.nodes.get(n)!.healthy)].slice(0, width);
    const outcome: WriteOutcome = { stored: [], failed: [] };
    const placements: ShardPlacement[] = await Promise.all(shards.map(async (payload, i) => {
      const [header, body] = encodeShard({ k, m, index: i, blockLength: data.length, blockHash: hash }, payload);
      const placement: ShardPlacement = { index: i, node: targets[i], checksum: header.readUInt32BE(header.length - 8), state: "missing" };
      const node = this.nodes.get(targets[i])!;
      if (!node.healthy) {
        outcome.failed.push({ index: i, node: node.name, reason: "node is down" });
        return placement;
      }
      try {
        await node.put(shardKey(hash, i), [header, body]);
        this.metrics.shardBytes.inc({ direction: "written" }, header.length + body.length);
        this.metrics.shardWrites.inc({ node: node.name });
        outcome.stored.push(i);
        return { ...placement, state: "ok" };
      } catch (err) {
        this.metrics.shardFailures.inc({ node: node.name, operation: "write" });
        outcome.failed.push({ index: i, node: node.name, reason: (err as Error).message });
        return placement;
      }
    }));
    if (!meetsWriteQuorum(outcome, this.config.writeQuorum)) {
      // The block stays in 'writing': never served, and a retry takes it over. Shards that did land
      // are removed now where possible (the orphan sweep catches the rest).
      await Promise.all(outcome.stored.map((i) => this.nodes.get(targets[i])!.delete(shardKey(hash, i)).catch(() => undefined)));
      throw unavailable(
        `block ${hash.toString("hex")} not stored: ${describeFailures(outcome, width)}; ` +
          `${outcome.stored.length} stored, the write quorum is ${this.config.writeQuorum}; retry when the storage nodes are back`,
      );
    }
    await this.index.commitWrite(hash, placements);
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
    const k = record.dataShards;
    // Fast path: k shards the index records as stored, data shards first (no decoding when they are
    // all data), each within the hedge deadline. Anything short brings in every other shard.
    const survey = await this.survey(record, { hedgeMs: this.config.hedgeMs, enough: k });
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

  /**
   * Seeks a block's shards, trusting the index only as a hint. With `enough`, it stops once that
   * many good shards are in hand; otherwise it tries every placement, whatever its recorded state.
   * While fewer than k are good, it looks again: nodes thought down are tried, and a shard absent
   * where the index puts it is looked for by key on every other node (a repair may have rebuilt it
   * there without recording it). A shard is `gone` only when every node answered without it.
   */
  async survey(record: BlockRecord, opts: { hedgeMs?: number; enough?: number } = {}): Promise<ShardSurvey[]> {
    const k = record.dataShards;
    const out: ShardSurvey[] = record.shards.map((p) => ({ index: p.index, node: p.node, status: "unreachable", tried: false, detail: "not tried" }));
    const look = async (p: ShardPlacement, timeoutMs?: number, evenIfDown = false) => {
      const found = await this.inspectShard(record, p, timeoutMs, evenIfDown);
      out[p.index] = { ...found, tried: found.tried || out[p.index].tried };
    };
    const goodCount = () => out.filter((s) => s.status === "ok").length;
    // 1. Shards recorded as stored on nodes that answer, data shards first.
    const first = record.shards.filter((p) => isStored(p.state) && this.nodes.get(p.node)?.healthy);
    await Promise.all((opts.enough ? first.slice(0, opts.enough) : first).map((p) => look(p, opts.hedgeMs)));
    if (opts.enough && goodCount() >= opts.enough) return out;
    // 2. Every other placement, whatever the index says about it.
    await Promise.all(record.shards.filter((p) => !out[p.index].tried).map((p) => look(p)));
    if (goodCount() >= k) return out;
    // 3. Still short: nodes believed down are asked anyway (within the hedge), slow ones get the full
    // timeout, and shards absent where recorded are looked for on every other node.
    await Promise.all(out.map(async (s, i) => {
      if (s.status === "ok") return;
      const p = record.shards[i];
      if (s.status === "unreachable") await look(p, s.tried ? undefined : this.config.hedgeMs, true);
      if (out[i].status !== "gone") return;
      out[i] = await this.searchElsewhere(record, p, out[i]);
    }));
    return out;
  }

  /** Looks for a shard absent (or corrupt) on its recorded node on every other node, by key. */
  private async searchElsewhere(record: BlockRecord, p: ShardPlacement, atHome: ShardSurvey): Promise<ShardSurvey> {
    const others = this.nodes.names.filter((n) => n !== p.node);
    const found = await Promise.all(others.map((node) => this.inspectShard(record, { ...p, node }, undefined, true)));
    const hit = found.find((f) => f.status === "ok");
    if (hit) return { ...hit, relocated: true };
    const silent = found.filter((f) => f.status === "unreachable").map((f) => f.node);
    if (silent.length === 0) return atHome;
    // Not proven gone: it may sit on a node that did not answer.
    return { ...atHome, status: "unreachable", detail: `${atHome.detail}; not found elsewhere, but ${silent.join(", ")} did not answer` };
  }

  /**
   * Reads and verifies one shard on one node, saying what is wrong with it when it cannot be used.
   * A node believed down is not asked unless `evenIfDown` (its requests would only time out).
   */
  async inspectShard(record: BlockRecord, placement: ShardPlacement, timeoutMs?: number, evenIfDown = false): Promise<ShardSurvey> {
    const base = { index: placement.index, node: placement.node };
    const node = this.nodes.get(placement.node);
    if (!node) return { ...base, status: "unreachable", tried: false, detail: `node ${placement.node} is not configured` };
    if (!node.healthy && !evenIfDown) return { ...base, status: "unreachable", tried: false, detail: `${node.name} is down` };
    let object: Buffer;
    try {
      object = await node.get(shardKey(record.hash, placement.index), timeoutMs);
    } catch (err) {
      this.metrics.shardFailures.inc({ node: placement.node, operation: "read" });
      if (err instanceof ShardMissingError) return { ...base, status: "gone", problem: "absent", tried: true, detail: `absent on ${node.name}` };
      // The node could not read the object. If it serves its identity object, its drive is fine and
      // this object failed MinIO's own checksum: corrupt. Otherwise the drive is offline: unreachable.
      if (err instanceof ShardUnreadableError && (await node.answers())) {
        return { ...base, status: "gone", problem: "corrupt", tried: true, detail: `corrupt on ${node.name}: ${err.message}` };
      }
      return { ...base, status: "unreachable", tried: true, detail: (err as Error).message };
    }
    this.metrics.shardBytes.inc({ direction: "read" }, object.length);
    try {
      const { header, payload } = decodeShard(object);
      if (!header.blockHash.equals(record.hash) || header.index !== placement.index || header.payloadChecksum !== placement.checksum) {
        throw new ShardCorruptError("shard does not belong to this block");
      }
      return { ...base, status: "ok", payload, bytes: object.length, tried: true, detail: "ok" };
    } catch (err) {
      this.metrics.shardFailures.inc({ node: placement.node, operation: "read" });
      return { ...base, status: "gone", problem: "corrupt", bytes: object.length, tried: true, detail: `corrupt on ${node.name}: ${(err as Error).message}` };
    }
  }

  /** Writes one (rebuilt) shard to a node and returns its placement. */
  async writeShard(record: BlockRecord, index: number, payload: Uint8Array, nodeName: string, state: ShardPlacement["state"] = "ok"): Promise<ShardPlacement> {
    const [header, body] = encodeShard(
      { k: record.dataShards, m: record.parityShards, index, blockLength: record.size, blockHash: record.hash }, payload,
    );
    await this.nodes.get(nodeName)!.put(shardKey(record.hash, index), [header, body]);
    this.metrics.shardBytes.inc({ direction: "written" }, header.length + body.length);
    this.metrics.shardWrites.inc({ node: nodeName });
    return { index, node: nodeName, checksum: header.readUInt32BE(header.length - 8), state };
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
