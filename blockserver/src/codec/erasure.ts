import { createRequire } from "node:module";

/**
 * The part of @ronomon/reed-solomon (a CommonJS native addon without types) that we use. Shards
 * live in two contiguous buffers: k data shards in `buffer`, m parity shards in `parity`. Bit i of
 * `sources`/`targets` stands for shard i (parity shards follow the k data shards).
 */
interface ReedSolomonBinding {
  readonly MAX_K: number;
  readonly MAX_M: number;
  create(k: number, m: number): Buffer;
  encode(
    context: Buffer,
    sources: number,
    targets: number,
    buffer: Buffer,
    bufferOffset: number,
    bufferSize: number,
    parity: Buffer,
    parityOffset: number,
    paritySize: number,
    callback: (error?: Error) => void,
  ): void;
}

// Node's ESM loader cannot load a `.node` main file, so the addon comes in through require.
const ReedSolomon = createRequire(import.meta.url)("@ronomon/reed-solomon") as ReedSolomonBinding;

/** The library requires shards to be a multiple of 8 bytes (its widest word). */
const SHARD_ALIGNMENT = 8;
/** The library addresses buffers with 32-bit lengths. */
const MAX_BUFFER_BYTES = 0xffffffff;

/** Fewer than k shards survive: the block cannot be rebuilt, and no guess is returned. */
export class NotEnoughShardsError extends Error {
  override readonly name = "NotEnoughShardsError";

  constructor(
    readonly present: number,
    readonly needed: number,
  ) {
    super(`only ${present} shards are present, ${needed} are needed to rebuild the block`);
  }
}

/**
 * Reed-Solomon erasure coding of one block into k data shards (the block split in order,
 * zero-padded) and m parity shards; any k of the k + m rebuild the block. m = 0 is plain striping
 * and never calls the library, which does not accept it.
 */
export class ErasureCodec {
  /** Built once: it holds the coding matrix, and the library may use it concurrently. */
  private readonly context: Buffer | undefined;

  constructor(
    readonly dataShards: number,
    readonly parityShards: number,
  ) {
    if (!Number.isInteger(dataShards) || dataShards < 1 || dataShards > ReedSolomon.MAX_K) {
      throw new RangeError(`erasure coding needs 1 to ${ReedSolomon.MAX_K} data shards, got ${dataShards}`);
    }
    if (!Number.isInteger(parityShards) || parityShards < 0 || parityShards > ReedSolomon.MAX_M) {
      throw new RangeError(`erasure coding needs 0 to ${ReedSolomon.MAX_M} parity shards, got ${parityShards}`);
    }
    this.context = parityShards > 0 ? ReedSolomon.create(dataShards, parityShards) : undefined;
  }

  /** ceil(length / k), rounded up to the library's 8-byte alignment, and never 0. */
  shardSizeFor(length: number): number {
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`block length must be a non-negative integer, got ${length}`);
    const perShard = Math.ceil(length / this.dataShards);
    return Math.max(SHARD_ALIGNMENT, Math.ceil(perShard / SHARD_ALIGNMENT) * SHARD_ALIGNMENT);
  }

  /**
   * The k + m shards of a block, each shardSizeFor(block.length) bytes. The block is copied once
   * into one buffer; data shards are views of it and parity shards views of one parity buffer.
   */
  async encode(block: Uint8Array): Promise<Buffer[]> {
    const k = this.dataShards;
    const m = this.parityShards;
    const shardSize = this.checkedShardSize(block.length);
    const data = Buffer.allocUnsafe(shardSize * k);
    data.set(block, 0);
    data.fill(0, block.length);
    const parity = Buffer.allocUnsafe(shardSize * m);
    if (m > 0) {
      const sources = allBits(k);
      await this.run(sources, allBits(k + m) & ~sources, data, parity);
    }
    return this.views(data, parity, shardSize);
  }

  /**
   * Rebuilds a block from its shards (k + m entries, undefined where missing). When all data shards
   * are present they are simply joined; otherwise the missing ones are computed from any k.
   */
  async decode(shards: ReadonlyArray<Uint8Array | undefined>, originalLength: number): Promise<Buffer> {
    const shardSize = this.checkShards(shards, originalLength);
    const k = this.dataShards;
    let missingData = 0;
    for (let i = 0; i < k; i++) if (!shards[i]) missingData |= 1 << i;
    if (missingData === 0) return Buffer.concat(shards.slice(0, k) as Uint8Array[], originalLength);
    const { data } = await this.rebuild(shards, shardSize, missingData);
    return data.subarray(0, originalLength);
  }

  /**
   * All k + m shards, the missing ones (data and parity) rebuilt: what repair writes back. When
   * nothing is missing the given shards are returned as Buffer views, without copying.
   */
  async reconstructShards(shards: ReadonlyArray<Uint8Array | undefined>, originalLength: number): Promise<Buffer[]> {
    const shardSize = this.checkShards(shards, originalLength);
    let missing = 0;
    shards.forEach((s, i) => {
      if (!s) missing |= 1 << i;
    });
    if (missing === 0) return shards.map((s) => Buffer.from(s!.buffer, s!.byteOffset, s!.length));
    const { data, parity } = await this.rebuild(shards, shardSize, missing);
    return this.views(data, parity, shardSize);
  }

  private checkedShardSize(length: number): number {
    const shardSize = this.shardSizeFor(length);
    if (shardSize * Math.max(this.dataShards, this.parityShards) > MAX_BUFFER_BYTES) {
      throw new RangeError(`a block of ${length} bytes is too large to erasure-code ${this.dataShards}+${this.parityShards}`);
    }
    return shardSize;
  }

  /** Checks the shard list against the codec and the block length; returns the shard size. */
  private checkShards(shards: ReadonlyArray<Uint8Array | undefined>, originalLength: number): number {
    const width = this.dataShards + this.parityShards;
    if (shards.length !== width) throw new RangeError(`expected ${width} shard slots (k + m), got ${shards.length}`);
    const shardSize = this.checkedShardSize(originalLength);
    let present = 0;
    shards.forEach((s, i) => {
      if (!s) return;
      if (s.length !== shardSize) {
        throw new RangeError(`shard ${i} is ${s.length} bytes, but a ${originalLength}-byte block has ${shardSize}-byte shards`);
      }
      present++;
    });
    if (present < this.dataShards) throw new NotEnoughShardsError(present, this.dataShards);
    return shardSize;
  }

  /**
   * Copies the present shards into one data and one parity buffer and has the library compute the
   * `targets`. Every present shard is a source: the library recomputes any parity shard that is not
   * one, so copying present parity is cheaper than leaving it out. Non-source, non-target regions
   * are scratch space.
   */
  private async rebuild(
    shards: ReadonlyArray<Uint8Array | undefined>,
    shardSize: number,
    targets: number,
  ): Promise<{ data: Buffer; parity: Buffer }> {
    const k = this.dataShards;
    const data = Buffer.allocUnsafe(shardSize * k);
    const parity = Buffer.allocUnsafe(shardSize * this.parityShards);
    let sources = 0;
    shards.forEach((s, i) => {
      if (!s) return;
      sources |= 1 << i;
      if (i < k) data.set(s, i * shardSize);
      else parity.set(s, (i - k) * shardSize);
    });
    await this.run(sources, targets, data, parity);
    return { data, parity };
  }

  private run(sources: number, targets: number, data: Buffer, parity: Buffer): Promise<void> {
    const context = this.context;
    // Unreachable: with m = 0 nothing is ever missing once k shards are present.
    if (!context) throw new Error("erasure codec without parity shards cannot rebuild shards");
    return new Promise((resolve, reject) => {
      ReedSolomon.encode(context, sources, targets, data, 0, data.length, parity, 0, parity.length, (error) =>
        error ? reject(error) : resolve(),
      );
    });
  }

  private views(data: Buffer, parity: Buffer, shardSize: number): Buffer[] {
    const shards: Buffer[] = [];
    for (let i = 0; i < this.dataShards; i++) shards.push(data.subarray(i * shardSize, (i + 1) * shardSize));
    for (let i = 0; i < this.parityShards; i++) shards.push(parity.subarray(i * shardSize, (i + 1) * shardSize));
    return shards;
  }
}

/** A mask with the low n bits set (n ≤ 30 here, so 32-bit integer arithmetic is exact). */
function allBits(n: number): number {
  return (1 << n) - 1;
}
