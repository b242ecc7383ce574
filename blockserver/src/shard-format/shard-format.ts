import { crc32 } from "node:zlib";

/**
 * The on-disk format of one shard object: a fixed header, then the shard payload. Every field a
 * reader acts on is covered by a checksum, so a flipped bit or a torn write is reported as
 * corruption (and the shard rebuilt from the others) rather than served.
 *
 *   offset  size  field
 *        0     4  magic "SCHD"
 *        4     1  format version (1)
 *        5     1  header length in bytes (64)
 *        6     1  k, data shards of the block
 *        7     1  m, parity shards of the block
 *        8     1  index of this shard, 0..k+m-1
 *        9     3  reserved, zero
 *       12     8  block length, u64 BE
 *       20     4  payload length, u32 BE
 *       24    32  block hash, SHA-256 of the whole block
 *       56     4  payload checksum, CRC-32 of the payload, u32 BE
 *       60     4  header checksum, CRC-32 of bytes 0..59, u32 BE
 *
 * The header length is stored so a later version can grow the header and an older reader can
 * still say precisely why it refuses the object.
 */

export interface ShardHeader {
  version: number;
  k: number;
  m: number;
  index: number;
  blockLength: number;
  payloadLength: number;
  blockHash: Buffer;
  payloadChecksum: number;
}

export const SHARD_HEADER_BYTES = 64;
const SHARD_FORMAT_VERSION = 1;
const MAGIC = Buffer.from("SCHD", "latin1");
const BLOCK_HASH_BYTES = 32;

const Offset = {
  version: 4,
  headerLength: 5,
  k: 6,
  m: 7,
  index: 8,
  reserved: 9,
  blockLength: 12,
  payloadLength: 20,
  blockHash: 24,
  payloadChecksum: 56,
  headerChecksum: 60,
} as const;

/** A stored shard failed a check: the caller treats it as missing and repair rewrites it. */
export class ShardCorruptError extends Error {
  override readonly name = "ShardCorruptError";

  constructor(readonly reason: string) {
    super(`shard object is corrupt: ${reason}`);
  }
}

/** The checksum stored for a payload (and recorded in the block index). */
export function shardChecksum(payload: Uint8Array): number {
  return crc32(payload) >>> 0;
}

/**
 * The header and the payload of a shard object, as two buffers to be written one after the other;
 * the payload is not copied.
 */
export function encodeShard(
  h: Omit<ShardHeader, "version" | "payloadLength" | "payloadChecksum">,
  payload: Uint8Array,
): [header: Buffer, payload: Buffer] {
  checkByte("k", h.k, 1);
  checkByte("m", h.m, 0);
  if (!Number.isInteger(h.index) || h.index < 0 || h.index >= h.k + h.m) {
    throw new RangeError(`shard index must be in 0..${h.k + h.m - 1} for a ${h.k}+${h.m} code, got ${h.index}`);
  }
  if (!Number.isSafeInteger(h.blockLength) || h.blockLength < 0) {
    throw new RangeError(`block length must be a non-negative integer, got ${h.blockLength}`);
  }
  if (h.blockHash.length !== BLOCK_HASH_BYTES) {
    throw new RangeError(`block hash must be ${BLOCK_HASH_BYTES} bytes of SHA-256, got ${h.blockHash.length}`);
  }
  if (payload.length > 0xffffffff) throw new RangeError(`shard payload of ${payload.length} bytes does not fit the format`);

  const header = Buffer.alloc(SHARD_HEADER_BYTES);
  MAGIC.copy(header, 0);
  header[Offset.version] = SHARD_FORMAT_VERSION;
  header[Offset.headerLength] = SHARD_HEADER_BYTES;
  header[Offset.k] = h.k;
  header[Offset.m] = h.m;
  header[Offset.index] = h.index;
  header.writeBigUInt64BE(BigInt(h.blockLength), Offset.blockLength);
  header.writeUInt32BE(payload.length, Offset.payloadLength);
  header.set(h.blockHash, Offset.blockHash);
  header.writeUInt32BE(shardChecksum(payload), Offset.payloadChecksum);
  header.writeUInt32BE(crc32(header.subarray(0, Offset.headerChecksum)) >>> 0, Offset.headerChecksum);
  return [header, Buffer.from(payload.buffer, payload.byteOffset, payload.length)];
}

/** The payload checksum a shard header (from encodeShard) records. */
export function payloadChecksumOf(header: Buffer): number {
  return header.readUInt32BE(Offset.payloadChecksum);
}

/**
 * Parses and verifies a whole shard object. The payload is a view of `object`; the block hash is
 * copied, so a header kept for a report does not pin the whole shard in memory.
 */
export function decodeShard(object: Buffer): { header: ShardHeader; payload: Buffer } {
  if (object.length < MAGIC.length || !object.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new ShardCorruptError("bad magic, not a shard object");
  }
  if (object.length <= Offset.headerLength) throw new ShardCorruptError(`truncated header (${object.length} bytes)`);
  const version = object[Offset.version];
  if (version !== SHARD_FORMAT_VERSION) throw new ShardCorruptError(`unknown format version ${version}`);
  const headerLength = object[Offset.headerLength];
  if (headerLength !== SHARD_HEADER_BYTES) {
    throw new ShardCorruptError(`header length ${headerLength} does not match version ${version} (${SHARD_HEADER_BYTES})`);
  }
  if (object.length < SHARD_HEADER_BYTES) throw new ShardCorruptError(`truncated header (${object.length} bytes)`);
  const headerChecksum = object.readUInt32BE(Offset.headerChecksum);
  if ((crc32(object.subarray(0, Offset.headerChecksum)) >>> 0) !== headerChecksum) {
    throw new ShardCorruptError("header checksum mismatch");
  }

  // The checksum passed, so what follows guards against a writer that broke the rules.
  if (object[Offset.reserved] !== 0 || object[Offset.reserved + 1] !== 0 || object[Offset.reserved + 2] !== 0) {
    throw new ShardCorruptError("reserved header bytes are not zero");
  }
  const k = object[Offset.k];
  const m = object[Offset.m];
  const index = object[Offset.index];
  if (k < 1 || index >= k + m) throw new ShardCorruptError(`shard index ${index} is out of range for a ${k}+${m} code`);
  const blockLength = object.readBigUInt64BE(Offset.blockLength);
  if (blockLength > BigInt(Number.MAX_SAFE_INTEGER)) throw new ShardCorruptError(`block length ${blockLength} is out of range`);

  const payloadLength = object.readUInt32BE(Offset.payloadLength);
  const actualPayload = object.length - SHARD_HEADER_BYTES;
  if (actualPayload !== payloadLength) {
    throw new ShardCorruptError(`length mismatch: header says ${payloadLength} payload bytes, object has ${actualPayload}`);
  }
  const payload = object.subarray(SHARD_HEADER_BYTES);
  const payloadChecksum = object.readUInt32BE(Offset.payloadChecksum);
  if (shardChecksum(payload) !== payloadChecksum) throw new ShardCorruptError("payload checksum mismatch");

  return {
    header: {
      version,
      k,
      m,
      index,
      blockLength: Number(blockLength),
      payloadLength,
      blockHash: Buffer.from(object.subarray(Offset.blockHash, Offset.blockHash + BLOCK_HASH_BYTES)),
      payloadChecksum,
    },
    payload,
  };
}

function checkByte(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min || value > 255) {
    throw new RangeError(`${name} must be an integer in ${min}..255, got ${value}`);
  }
}
