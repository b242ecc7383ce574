import { createHash } from "node:crypto";
import { ErasureCodec, NotEnoughShardsError } from "./codec/erasure.js";
import type { BlockserverConfig } from "./config.js";
import { Code, ConnectError, dataLoss, invalidArgument } from "./errors.js";
import type { BlockIndex, BlockRecord, ShardPlacement } from "./index/block-index.js";
import type { BlockserverMetrics } from "./metrics.js";
import { StorageNode } from "./nodes/storage-node.js";
import { rankNodes } from "./placement/rendezvous.js";
import { decodeShard, encodeShard, ShardCorruptError } from "./shard-format/shard-format.js";

export const HASH_BYTES = 32;

export const shardKey = (hash: Uint8Array, index: number): string => {
  const hex = Buffer.from(hash).toString("hex");
  return `blocks/${hex.slice(0, 2)}/${hex}.${index}`;
};

/**
 * Content-addressed blocks, erasure-coded across storage nodes. A write is acknowledged only after
 * every shard is stored and the index says where; a read needs any k good shards.
 */
export class BlockStore {
  private readonly codec: ErasureCodec;
  private readonly nodes = new Map<string, StorageNode>();
  /** Writes of the same hash in flight in this process share one promise: a block is written once. */
  private readonly writing = new Map<string, Promise<boolean>>();

  constructor(
    private readonly config: BlockserverConfig,
    private readonly index: BlockIndex,
    private readonly metrics: BlockserverMetrics,
  ) {
    this.codec = new ErasureCodec(config.dataShards, config.parityShards);
    for (const n of config.storageNodes) this.nodes.set(n.name, new StorageNode(n, config.nodeTimeoutMs));
  }

  /** Stores a block after checking its hash; returns true when it was already stored. */
  async put(hash: Buffer, data: Uint8Array): Promise<boolean> {
    if (hash.length !== HASH_BYTES) throw invalidArgument(`hash must be ${HASH_BYTES} bytes of SHA-256, got ${hash.length}`);
    const actual = createHash("sha256").update(data).digest();
    if (!actual.equals(hash)) {
      throw invalidArgument(`hash mismatch: the ${data.length} bytes sent hash to ${actual.toString("hex")}, not ${hash.toString("hex")}; nothing was stored`);
    }
    const key = hash.toString("hex");
    const inFlight = this.writing.get(key);
    if (inFlight) return inFlight.then(() => true);
    const work = this.write(hash, data).finally(() => this.writing.delete(key));
    this.writing.set(key, work);
    return work;
  }

  private async write(hash: Buffer, data: Uint8Array): Promise<boolean> {
    const existing = await this.index.get(hash);
    if (existing?.state === "live") return true;
    const k = this.codec.dataShards;
    const width = k + this.codec.parityShards;
    const shardSize = this.codec.shardSizeFor(data.length);
    await this.index.beginWrite({ hash, size: data.length, dataShards: k, parityShards: this.codec.parityShards, shardSize });
    const stopEncode = this.metrics.codingSeconds.startTimer({ operation: "encode" });
    const shards = await this.codec.encode(data);
    stopEncode();
    const targets = rankNodes(hash, [...this.nodes.keys()]).slice(0, width);
    const placements: ShardPlacement[] = [];
    const results = await Promise.allSettled(shards.map(async (payload, i) => {
      const [header, body] = encodeShard({ k, m: this.codec.parityShards, index: i, blockLength: data.length, blockHash: hash }, payload);
      const node = this.nodes.get(targets[i])!;
      await node.put(shardKey(hash, i), [header, body]);
      this.metrics.shardBytes.inc({ direction: "written" }, header.length + body.length);
      placements.push({ index: i, node: node.name, checksum: header.readUInt32BE(header.length - 8) });
    }));
    const failed = results.flatMap((r, i) => (r.status === "rejected" ? [{ node: targets[i], reason: String((r.reason as Error).message ?? r.reason) }] : []));
    if (failed.length > 0) {
      for (const f of failed) this.metrics.shardFailures.inc({ node: f.node, operation: "write" });
      // The block stays in 'writing': never served, and a retry takes it over.
      throw new ConnectError(
        `block ${hash.toString("hex")} not stored: ${failed.length} of ${width} shard writes failed (${failed.map((f) => `${f.node}: ${f.reason}`).join("; ")}); retry later`,
        Code.Unavailable,
      );
    }
    placements.sort((a, b) => a.index - b.index);
    await this.index.commitWrite(hash, placements);
    this.metrics.blockBytes.inc({ direction: "written" }, data.length);
    return false;
  }

  async get(hash: Buffer): Promise<Buffer> {
    if (hash.length !== HASH_BYTES) throw invalidArgument(`hash must be ${HASH_BYTES} bytes of SHA-256, got ${hash.length}`);
    const record = await this.index.get(hash);
    if (!record || record.state !== "live") {
      throw new ConnectError(`block ${hash.toString("hex")} is not stored`, Code.NotFound);
    }
    const k = record.dataShards;
    const width = k + record.parityShards;
    const shards: (Buffer | undefined)[] = new Array(width).fill(undefined);
    // Fast path: the k data shards, no decoding. Any shard that is missing or corrupt brings in parity.
    const fetched = await Promise.all(record.shards.slice(0, k).map((p) => this.readShard(record, p)));
    fetched.forEach((s, i) => (shards[i] = s));
    let good = fetched.filter(Boolean).length;
    if (good < k) {
      this.metrics.degradedReads.inc();
      const parity = await Promise.all(record.shards.slice(k).map((p) => this.readShard(record, p)));
      parity.forEach((s, i) => (shards[k + i] = s));
      good += parity.filter(Boolean).length;
    }
    let data: Buffer;
    try {
      const stopDecode = this.metrics.codingSeconds.startTimer({ operation: "decode" });
      data = await this.codec.decode(shards, record.size);
      stopDecode();
    } catch (err) {
      if (err instanceof NotEnoughShardsError) throw dataLoss(hash.toString("hex"), `only ${good} of the ${k} shards needed are readable`);
      throw err;
    }
    if (!createHash("sha256").update(data).digest().equals(hash)) {
      throw dataLoss(hash.toString("hex"), "the rebuilt bytes do not match the block hash");
    }
    this.metrics.blockBytes.inc({ direction: "read" }, data.length);
    return data;
  }

  /** One shard's payload, or undefined when it is missing, unreachable or fails its checksum. */
  private async readShard(record: BlockRecord, placement: ShardPlacement): Promise<Buffer | undefined> {
    const node = this.nodes.get(placement.node);
    if (!node) return undefined;
    try {
      const object = await node.get(shardKey(record.hash, placement.index));
      this.metrics.shardBytes.inc({ direction: "read" }, object.length);
      const { header, payload } = decodeShard(object);
      if (!header.blockHash.equals(record.hash) || header.index !== placement.index || header.payloadChecksum !== placement.checksum) {
        throw new ShardCorruptError("shard does not belong to this block");
      }
      return payload;
    } catch {
      this.metrics.shardFailures.inc({ node: placement.node, operation: "read" });
      return undefined;
    }
  }

  /** Which hashes are stored and live. */
  has(hashes: Buffer[]): Promise<boolean[]> {
    for (const h of hashes) {
      if (h.length !== HASH_BYTES) throw invalidArgument(`every hash must be ${HASH_BYTES} bytes of SHA-256, got one of ${h.length}`);
    }
    return this.index.live(hashes);
  }
}
