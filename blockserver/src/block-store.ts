import { createHash } from "node:crypto";
import { ErasureCodec, NotEnoughShardsError } from "./codec/erasure.js";
import type { BlockserverConfig } from "./config.js";
import { Code, ConnectError, dataLoss, invalidArgument } from "./errors.js";
import type { BlockIndex, BlockRecord, ShardPlacement } from "./index/block-index.js";
import type { BlockserverMetrics } from "./metrics.js";
import type { NodeSet } from "./nodes/node-set.js";
import { ShardMissingError } from "./nodes/storage-node.js";
import { rankNodes } from "./placement/rendezvous.js";
import { describeFailures, meetsWriteQuorum, type WriteOutcome } from "./quorum.js";
import { decodeShard, encodeShard, ShardCorruptError } from "./shard-format/shard-format.js";

export const HASH_BYTES = 32;

export const shardKey = (hash: Uint8Array, index: number): string => {
  const hex = Buffer.from(hash).toString("hex");
  return `blocks/${hex.slice(0, 2)}/${hex}.${index}`;
};

/** What reading one shard gave: its verified payload, or what is wrong with it. */
export interface ShardRead {
  payload?: Buffer;
  problem?: "missing" | "corrupt" | "unreachable" | "dead-node";
  /** Bytes read from the node. */
  bytes?: number;
}

/** Where to send blocks whose shards need rebuilding (the repairer). */
export interface RepairSink {
  enqueue(hash: Buffer, reason: string): void;
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
  repairs: RepairSink = { enqueue: () => undefined };
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
    if (existing?.state === "live") return true;
    if (existing?.state === "deleting") {
      // Its shards are being removed right now; writing them again would race that removal.
      throw new ConnectError(`block ${hash.toString("hex")} is being garbage-collected; send it again in a moment`, Code.Aborted);
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
      throw new ConnectError(
        `block ${hash.toString("hex")} not stored: ${describeFailures(outcome, width)}; ` +
          `${outcome.stored.length} stored, the write quorum is ${this.config.writeQuorum}; retry when the storage nodes are back`,
        Code.Unavailable,
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
      throw new ConnectError(`block ${hash.toString("hex")} is not stored`, Code.NotFound);
    }
    const k = record.dataShards;
    const width = k + record.parityShards;
    const shards: (Buffer | undefined)[] = new Array(width).fill(undefined);
    // Fast path: the k data shards, no decoding. A shard that is missing, corrupt, on a down node
    // or slower than the hedge deadline brings in parity instead.
    const data = await Promise.all(record.shards.slice(0, k).map((p) => this.readShard(record, p, this.config.hedgeMs)));
    data.forEach((s, i) => (shards[i] = s));
    let good = data.filter(Boolean).length;
    const degraded = good < k;
    if (degraded) {
      this.metrics.degradedReads.inc();
      const parity = await Promise.all(record.shards.slice(k).map((p) => this.readShard(record, p)));
      parity.forEach((s, i) => (shards[k + i] = s));
      good += parity.filter(Boolean).length;
    }
    // Heal on read: any shard this read tried and could not use goes to repair (unread parity does not).
    const attempted = degraded ? width : k;
    if (shards.slice(0, attempted).some((sh) => !sh)) this.repairs.enqueue(hash, "read found missing or corrupt shards");
    let block: Buffer;
    try {
      const stopDecode = this.metrics.codingSeconds.startTimer({ operation: "decode" });
      block = await this.codec.decode(shards, record.size);
      stopDecode();
    } catch (err) {
      if (err instanceof NotEnoughShardsError) throw dataLoss(hash.toString("hex"), `only ${good} of the ${k} shards needed are readable`);
      throw err;
    }
    if (!createHash("sha256").update(block).digest().equals(hash)) {
      throw dataLoss(hash.toString("hex"), "the rebuilt bytes do not match the block hash");
    }
    this.metrics.blockBytes.inc({ direction: "read" }, block.length);
    return block;
  }

  /** Every shard of a block, verified; undefined where a shard is missing, unreachable or corrupt. */
  readAllShards(record: BlockRecord): Promise<(Buffer | undefined)[]> {
    return Promise.all(record.shards.map((p) => this.readShard(record, p)));
  }

  /** One shard's payload, or undefined when it is missing, unreachable, too slow or fails its checksum. */
  async readShard(record: BlockRecord, placement: ShardPlacement, timeoutMs?: number): Promise<Buffer | undefined> {
    return (await this.inspectShard(record, placement, timeoutMs)).payload;
  }

  /** Reads and verifies one shard, saying what is wrong with it when it cannot be used. */
  async inspectShard(record: BlockRecord, placement: ShardPlacement, timeoutMs?: number): Promise<ShardRead> {
    const node = this.nodes.get(placement.node);
    if (!node || this.nodes.isDead(node.name)) return { problem: "dead-node" };
    if (placement.state === "missing") return { problem: "missing" };
    if (!node.healthy) return { problem: "unreachable" };
    let object: Buffer;
    try {
      object = await node.get(shardKey(record.hash, placement.index), timeoutMs);
    } catch (err) {
      this.metrics.shardFailures.inc({ node: placement.node, operation: "read" });
      return { problem: err instanceof ShardMissingError ? "missing" : "unreachable" };
    }
    this.metrics.shardBytes.inc({ direction: "read" }, object.length);
    try {
      const { header, payload } = decodeShard(object);
      if (!header.blockHash.equals(record.hash) || header.index !== placement.index || header.payloadChecksum !== placement.checksum) {
        throw new ShardCorruptError("shard does not belong to this block");
      }
      return { payload, bytes: object.length };
    } catch {
      this.metrics.shardFailures.inc({ node: placement.node, operation: "read" });
      return { problem: "corrupt", bytes: object.length };
    }
  }

  /** Writes one (rebuilt) shard to a node and returns its placement. */
  async writeShard(record: BlockRecord, index: number, payload: Uint8Array, nodeName: string): Promise<ShardPlacement> {
    const [header, body] = encodeShard(
      { k: record.dataShards, m: record.parityShards, index, blockLength: record.size, blockHash: record.hash }, payload,
    );
    await this.nodes.get(nodeName)!.put(shardKey(record.hash, index), [header, body]);
    this.metrics.shardBytes.inc({ direction: "written" }, header.length + body.length);
    this.metrics.shardWrites.inc({ node: nodeName });
    return { index, node: nodeName, checksum: header.readUInt32BE(header.length - 8), state: "ok" };
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
