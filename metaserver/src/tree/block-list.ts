/** One block of a file version: its SHA-256 and length. */
export interface BlockEntry {
  hash: Uint8Array;
  size: number;
}

const ENTRY_BYTES = 36;

/** Packs a block list as 36 bytes per block (32-byte hash, 4-byte big-endian size). */
export function packBlockList(blocks: BlockEntry[]): Buffer {
  const out = Buffer.allocUnsafe(blocks.length * ENTRY_BYTES);
  blocks.forEach((b, i) => {
    out.set(b.hash, i * ENTRY_BYTES);
    out.writeUInt32BE(b.size, i * ENTRY_BYTES + 32);
  });
  return out;
}

export function unpackBlockList(packed: Buffer): BlockEntry[] {
  if (packed.length % ENTRY_BYTES !== 0) throw new Error(`corrupt block list: ${packed.length} bytes is not a multiple of ${ENTRY_BYTES}`);
  const blocks: BlockEntry[] = [];
  for (let off = 0; off < packed.length; off += ENTRY_BYTES) {
    blocks.push({ hash: packed.subarray(off, off + 32), size: packed.readUInt32BE(off + 32) });
  }
  return blocks;
}
