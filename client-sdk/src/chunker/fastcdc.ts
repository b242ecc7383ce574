/**
 * Content-defined chunking in the FastCDC family: a gear rolling hash, cut-point skipping (the
 * first `minSize` bytes of a chunk are never hashed) and normalized chunking (a stricter mask before
 * `avgSize`, a looser one after), so chunk sizes cluster around the average and a boundary depends
 * only on the few dozen bytes before it. An edit therefore changes only the chunks around it, and
 * the rest of a file deduplicates against the previous version.
 *
 * Boundaries are part of the storage format in practice: if they moved between versions, every
 * file would re-upload in full. The gear table, the masks and the skipping rule must not change;
 * the golden test in fastcdc.spec.ts pins them.
 */

export interface ChunkerOptions {
  /** No chunk but the last of a stream is this short or shorter. */
  minSize: number;
  /** The target average; a power of two, since it sets the number of mask bits. */
  avgSize: number;
  /** A chunk is cut here when no boundary was found before. */
  maxSize: number;
}

export const defaultChunkerOptions: ChunkerOptions = { minSize: 1 << 20, avgSize: 4 << 20, maxSize: 8 << 20 };

/** Chunks travel as single RPC messages and erasure-coded blocks; larger ones are refused. */
const MAX_CHUNK_BYTES = 16 << 20;
/** Below this the loose mask would have fewer than four bits and cut almost everywhere. */
const MIN_AVG_BYTES = 64;
/**
 * Normalization level 2 from the FastCDC paper: two mask bits more before the average size, two
 * fewer after, which narrows the size distribution without moving its centre much.
 */
const NORMALIZATION_BITS = 2;

/** Throws an Error naming the first rule the options break. */
export function validateChunkerOptions(o: ChunkerOptions): void {
  for (const key of ["minSize", "avgSize", "maxSize"] as const) {
    const v = o[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`chunker ${key} must be a positive integer, got ${v}`);
  }
  const { minSize, avgSize, maxSize } = o;
  if ((avgSize & (avgSize - 1)) !== 0) throw new Error(`chunker avgSize must be a power of two, got ${avgSize}`);
  if (avgSize < MIN_AVG_BYTES) throw new Error(`chunker avgSize must be at least ${MIN_AVG_BYTES}, got ${avgSize}`);
  if (!(minSize < avgSize && avgSize < maxSize)) {
    throw new Error(`chunker sizes must satisfy minSize < avgSize < maxSize, got ${minSize} / ${avgSize} / ${maxSize}`);
  }
  if (maxSize > MAX_CHUNK_BYTES) throw new Error(`chunker maxSize must be at most ${MAX_CHUNK_BYTES} (16 MiB), got ${maxSize}`);
}

/**
 * 256 pseudo-random 32-bit words from a fixed seed (a Weyl sequence through the murmur3 finalizer),
 * generated rather than pasted so the source stays reviewable. Changing the seed or the generator
 * moves every boundary.
 */
function gearTable(seed: number): Int32Array {
  const table = new Int32Array(256);
  let state = seed | 0;
  for (let i = 0; i < 256; i++) {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    table[i] = z ^ (z >>> 16);
  }
  return table;
}

const GEAR = gearTable(0x5a7c4e11);

/**
 * The top `bits` bits of a 32-bit word. The gear hash shifts left, so its low bits depend on the
 * last few bytes only; the high bits mix the last 32 bytes, which is the window we want.
 */
function topBitsMask(bits: number): number {
  return bits === 0 ? 0 : (~0 << (32 - bits)) | 0;
}

/** Options checked once, with the masks they imply. */
interface ResolvedOptions {
  minSize: number;
  avgSize: number;
  maxSize: number;
  strictMask: number;
  looseMask: number;
}

function resolve(o: ChunkerOptions): ResolvedOptions {
  validateChunkerOptions(o);
  const avgBits = 31 - Math.clz32(o.avgSize);
  return {
    minSize: o.minSize,
    avgSize: o.avgSize,
    maxSize: o.maxSize,
    strictMask: topBitsMask(avgBits + NORMALIZATION_BITS),
    looseMask: topBitsMask(avgBits - NORMALIZATION_BITS),
  };
}

/** The hash carried from one scanned range to the next when a chunk spans several pieces. */
interface GearState {
  hash: number;
}

/**
 * The hot loop: rolls the gear hash over data[from, to) and returns the index just after the first
 * byte where the masked hash is zero, or -1 (leaving the hash in `state`). `| 0` keeps the hash a
 * 32-bit integer, which is the arithmetic the boundaries are defined in and what V8 runs fastest.
 */
function gearScan(data: Uint8Array, from: number, to: number, mask: number, state: GearState): number {
  let h = state.hash;
  for (let i = from; i < to; i++) {
    h = ((h << 1) + GEAR[data[i]]) | 0;
    if ((h & mask) === 0) return i + 1;
  }
  state.hash = h;
  return -1;
}

/**
 * The length of the chunk starting at pieces[first][head], where the pieces hold at least
 * `available` bytes from there on. Callers pass `available` < maxSize only when no more data will
 * come, since a chunk is otherwise never cut short for lack of input.
 */
function cutLength(pieces: readonly Uint8Array[], first: number, head: number, available: number, o: ResolvedOptions): number {
  if (available <= o.minSize) return available;
  const limit = available < o.maxSize ? available : o.maxSize;
  const normal = o.avgSize < limit ? o.avgSize : limit;
  const state: GearState = { hash: 0 };
  // `base` is the chunk offset of pieces[p][from]; each piece is scanned over its part of the
  // strict range [minSize, normal) and then of the loose range [normal, limit).
  let base = 0;
  for (let p = first, from = head; base < limit; p++, from = 0) {
    const piece = pieces[p];
    const end = base + piece.length - from;
    let a = base > o.minSize ? base : o.minSize;
    let b = end < normal ? end : normal;
    if (a < b) {
      const cut = gearScan(piece, from + a - base, from + b - base, o.strictMask, state);
      if (cut >= 0) return base + cut - from;
    }
    a = base > normal ? base : normal;
    b = end < limit ? end : limit;
    if (a < b) {
      const cut = gearScan(piece, from + a - base, from + b - base, o.looseMask, state);
      if (cut >= 0) return base + cut - from;
    }
    base = end;
  }
  return limit;
}

/**
 * The length of the chunk that starts at `start`, looking no further than `end`: the first
 * boundary, else maxSize, else (when fewer bytes remain) end - start. Use it on the final bytes of
 * a stream or with at least maxSize bytes in view; otherwise the cut may fall short.
 */
export function findCutPoint(data: Uint8Array, start: number, end: number, opts: ChunkerOptions): number {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end || end > data.length) {
    throw new RangeError(`findCutPoint needs 0 <= start <= end <= ${data.length}, got start ${start}, end ${end}`);
  }
  return cutLength([data], 0, start, end - start, resolve(opts));
}

function view(data: Uint8Array, offset: number, length: number): Buffer {
  return Buffer.from(data.buffer, data.byteOffset + offset, length);
}

/** Splits a buffer into chunks; the chunks are views of `data`, not copies. */
export function chunkBuffer(data: Uint8Array, opts: ChunkerOptions = defaultChunkerOptions): Buffer[] {
  const o = resolve(opts);
  const pieces = [data];
  const chunks: Buffer[] = [];
  for (let start = 0; start < data.length; ) {
    const length = cutLength(pieces, 0, start, data.length - start, o);
    chunks.push(view(data, start, length));
    start += length;
  }
  return chunks;
}

/**
 * The input not yet chunked: the pieces as they arrived, with an offset into the first. Pieces are
 * kept, not joined, so only a chunk that straddles pieces is ever copied.
 */
export class PendingPieces {
  private pieces: Uint8Array[] = [];
  private first = 0;
  private head = 0;
  length = 0;

  push(piece: Uint8Array): void {
    this.pieces.push(piece);
    this.length += piece.length;
  }

  cutLength(o: ResolvedOptions): number {
    return cutLength(this.pieces, this.first, this.head, this.length, o);
  }

  /** Removes the next `n` bytes: a view when they lie in one piece, else one copy. */
  take(n: number): Buffer {
    const piece = this.pieces[this.first];
    let out: Buffer;
    if (piece.length - this.head >= n) {
      out = view(piece, this.head, n);
      this.advance(n);
    } else {
      out = Buffer.allocUnsafe(n);
      for (let filled = 0; filled < n; ) {
        const p = this.pieces[this.first];
        const count = Math.min(n - filled, p.length - this.head);
        out.set(p.subarray(this.head, this.head + count), filled);
        filled += count;
        this.advance(count);
      }
    }
    this.length -= n;
    return out;
  }

  private advance(n: number): void {
    this.head += n;
    if (this.head < this.pieces[this.first].length) return;
    this.head = 0;
    // A consumed piece is let go at once (its memory is freed once no chunk views it); the slots
    // are dropped in batches, which keeps a stream of tiny pieces linear, not quadratic.
    this.pieces[this.first] = CONSUMED;
    this.first++;
    if (this.first >= 1024 || this.first === this.pieces.length) {
      this.pieces.splice(0, this.first);
      this.first = 0;
    }
  }

  /** Bytes of the pieces still referenced here (consumed ones included, were any kept). */
  heldBytes(): number {
    return this.pieces.reduce((n, p) => n + p.length, 0);
  }
}

const CONSUMED = new Uint8Array(0);

/**
 * Chunks a stream (e.g. fs.createReadStream with a large highWaterMark) with the same boundaries as
 * chunkBuffer on the whole input, however it is split into pieces. It reads ahead only until
 * maxSize bytes are pending, so it holds at most maxSize plus one piece. Chunks inside one piece
 * are views of it, so the source must not reuse a piece's memory after yielding it (Node streams
 * never do).
 */
export async function* chunkStream(
  source: AsyncIterable<Uint8Array>,
  opts: ChunkerOptions = defaultChunkerOptions,
): AsyncGenerator<Buffer> {
  const o = resolve(opts);
  const pending = new PendingPieces();
  for await (const piece of source) {
    if (piece.length === 0) continue;
    pending.push(piece);
    while (pending.length >= o.maxSize) yield pending.take(pending.cutLength(o));
  }
  while (pending.length > 0) yield pending.take(pending.cutLength(o));
}
