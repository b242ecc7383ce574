import { crc32 } from "node:zlib";

/**
 * The format of one block packed in a volume: a self-describing record, a fixed header then the
 * block's bytes. Records follow each other with no gap in a volume's segments (and, once sealed,
 * in its data shards), so a reader holding any stretch of them can walk it, and a torn tail or a
 * flipped bit is found by a checksum rather than served.
 *
 *   offset  size  field
 *        0     4  magic "SVRC"
 *        4     1  format version (1)
 *        5     1  header length in bytes (52)
 *        6     1  flags (none defined in version 1: must be zero)
 *        7     1  reserved, zero
 *        8     4  payload length, u32 BE
 *       12    32  block hash, SHA-256 of the payload
 *       44     4  payload checksum, CRC-32 of the payload, u32 BE
 *       48     4  header checksum, CRC-32 of bytes 0..47, u32 BE
 *
 * The SHA-256 is the block's identity (the index is keyed by it); the CRCs make a scan that finds
 * where good records end cheap. Readers still verify the SHA-256 of what they serve.
 */

export interface RecordHeader {
  version: number;
  flags: number;
  payloadLength: number;
  blockHash: Buffer;
  payloadChecksum: number;
}

export const RECORD_HEADER_BYTES = 52;
const RECORD_FORMAT_VERSION = 1;
const MAGIC = Buffer.from("SVRC", "latin1");
const BLOCK_HASH_BYTES = 32;
/** Flags a version 1 reader knows (none yet): a record with any other bit set is refused, not misread. */
const KNOWN_FLAGS = 0;

const Offset = {
  version: 4,
  headerLength: 5,
  flags: 6,
  reserved: 7,
  payloadLength: 8,
  blockHash: 12,
  payloadChecksum: 44,
  headerChecksum: 48,
} as const;

/** A record failed a check: the copy holding it is damaged there (read another, or rebuild). */
export class RecordCorruptError extends Error {
  override readonly name = "RecordCorruptError";

  constructor(readonly reason: string, readonly offset: number) {
    super(`volume record at offset ${offset} is corrupt: ${reason}`);
  }
}

/** Bytes a record of a payload this long takes in a volume. */
export function recordLength(payloadLength: number): number {
  return RECORD_HEADER_BYTES + payloadLength;
}

/** The header of a record for `payload` (its hash given), to be written right before the payload, which is not copied. */
export function encodeRecord(blockHash: Uint8Array, payload: Uint8Array, flags = 0): [header: Buffer, payload: Buffer] {
  if (blockHash.length !== BLOCK_HASH_BYTES) throw new RangeError(`block hash must be ${BLOCK_HASH_BYTES} bytes of SHA-256, got ${blockHash.length}`);
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new RangeError(`record flags ${flags} are not defined in format version ${RECORD_FORMAT_VERSION}`);
  if (payload.length > 0xffffffff) throw new RangeError(`a record payload of ${payload.length} bytes does not fit the format`);
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  MAGIC.copy(header, 0);
  header[Offset.version] = RECORD_FORMAT_VERSION;
  header[Offset.headerLength] = RECORD_HEADER_BYTES;
  header[Offset.flags] = flags;
  header.writeUInt32BE(payload.length, Offset.payloadLength);
  header.set(blockHash, Offset.blockHash);
  header.writeUInt32BE(crc32(payload) >>> 0, Offset.payloadChecksum);
  header.writeUInt32BE(crc32(header.subarray(0, Offset.headerChecksum)) >>> 0, Offset.headerChecksum);
  return [header, Buffer.from(payload.buffer, payload.byteOffset, payload.length)];
}

/** Parses and checks the header of the record at `offset` of `bytes` (the payload need not be there). */
export function decodeRecordHeader(bytes: Buffer, offset = 0): RecordHeader {
  const fail = (reason: string): never => {
    throw new RecordCorruptError(reason, offset);
  };
  const available = bytes.length - offset;
  if (available < MAGIC.length || !bytes.subarray(offset, offset + MAGIC.length).equals(MAGIC)) fail("bad magic, not a volume record");
  if (available <= Offset.headerLength) fail(`truncated header (${available} bytes)`);
  const version = bytes[offset + Offset.version];
  if (version !== RECORD_FORMAT_VERSION) fail(`unknown format version ${version}`);
  const headerLength = bytes[offset + Offset.headerLength];
  if (headerLength !== RECORD_HEADER_BYTES) fail(`header length ${headerLength} does not match version ${version} (${RECORD_HEADER_BYTES})`);
  if (available < RECORD_HEADER_BYTES) fail(`truncated header (${available} bytes)`);
  if ((crc32(bytes.subarray(offset, offset + Offset.headerChecksum)) >>> 0) !== bytes.readUInt32BE(offset + Offset.headerChecksum)) fail("header checksum mismatch");
  // The checksum passed, so what follows guards against a writer that broke the rules.
  const flags = bytes[offset + Offset.flags];
  if ((flags & ~KNOWN_FLAGS) !== 0) fail(`unknown flags ${flags}`);
  if (bytes[offset + Offset.reserved] !== 0) fail("reserved header byte is not zero");
  return {
    version,
    flags,
    payloadLength: bytes.readUInt32BE(offset + Offset.payloadLength),
    blockHash: Buffer.from(bytes.subarray(offset + Offset.blockHash, offset + Offset.blockHash + BLOCK_HASH_BYTES)),
    payloadChecksum: bytes.readUInt32BE(offset + Offset.payloadChecksum),
  };
}

/**
 * Parses and checks the whole record at `offset` of `bytes`: its header, and its payload against
 * the payload checksum. The payload is a view of `bytes`; `end` is where the next record begins.
 */
export function decodeRecord(bytes: Buffer, offset = 0): { header: RecordHeader; payload: Buffer; end: number } {
  const header = decodeRecordHeader(bytes, offset);
  const start = offset + RECORD_HEADER_BYTES;
  const end = start + header.payloadLength;
  if (end > bytes.length) throw new RecordCorruptError(`truncated payload: header says ${header.payloadLength} bytes, ${bytes.length - start} are there`, offset);
  const payload = bytes.subarray(start, end);
  if ((crc32(payload) >>> 0) !== header.payloadChecksum) throw new RecordCorruptError("payload checksum mismatch", offset);
  return { header, payload, end };
}

/**
 * Walks the records of a stretch of a volume (a segment, a data shard) from its start: every sound
 * record in order, and where the sound ones end. A stretch may end in zero padding (a sealed data
 * shard) and is then complete; anything else after the last sound record (a torn write, a flipped
 * bit) is named in `problem`, and nothing after it is trusted.
 */
export function scanRecords(bytes: Buffer): { records: { offset: number; header: RecordHeader }[]; soundUpTo: number; problem?: RecordCorruptError } {
  const records: { offset: number; header: RecordHeader }[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (isZeroPadding(bytes, offset)) break;
    try {
      const { header, end } = decodeRecord(bytes, offset);
      records.push({ offset, header });
      offset = end;
    } catch (err) {
      if (!(err instanceof RecordCorruptError)) throw err;
      return { records, soundUpTo: offset, problem: err };
    }
  }
  return { records, soundUpTo: offset };
}

function isZeroPadding(bytes: Buffer, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
