import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  chunkBuffer,
  chunkStream,
  defaultChunkerOptions,
  findCutPoint,
  PendingPieces,
  validateChunkerOptions,
  type ChunkerOptions,
} from "./fastcdc.js";

const small: ChunkerOptions = { minSize: 256, avgSize: 1024, maxSize: 4096 };

/** Deterministic bytes (xorshift32), independent of the chunker's own generator. */
function pseudoRandomBytes(seed: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed | 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x >>> 24;
  }
  return out;
}

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of source) out.push(c);
  return out;
}

/** Feeds `data` as pieces of the given sizes, cycling through them. */
async function* pieces(data: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length];
    yield data.subarray(at, at + n);
    at += n;
  }
}

function expectWellFormed(chunks: Buffer[], data: Uint8Array, o: ChunkerOptions): void {
  expect(Buffer.concat(chunks).equals(data)).toBe(true);
  chunks.forEach((c, i) => {
    expect(c.length).toBeGreaterThan(0);
    expect(c.length).toBeLessThanOrEqual(o.maxSize);
    if (i < chunks.length - 1) expect(c.length).toBeGreaterThan(o.minSize);
  });
}

describe("chunker options", () => {
  it("accepts the defaults and the small test options", () => {
    expect(() => validateChunkerOptions(defaultChunkerOptions)).not.toThrow();
    expect(() => validateChunkerOptions(small)).not.toThrow();
  });

  it.each([
    [{ minSize: 256, avgSize: 1000, maxSize: 4096 }, /power of two/],
    [{ minSize: 1024, avgSize: 1024, maxSize: 4096 }, /minSize < avgSize < maxSize/],
    [{ minSize: 256, avgSize: 4096, maxSize: 4096 }, /minSize < avgSize < maxSize/],
    [{ minSize: 1 << 20, avgSize: 8 << 20, maxSize: (16 << 20) + 1 }, /at most/],
    [{ minSize: 0, avgSize: 1024, maxSize: 4096 }, /positive integer/],
    [{ minSize: 256.5, avgSize: 1024, maxSize: 4096 }, /positive integer/],
    [{ minSize: 8, avgSize: 32, maxSize: 64 }, /at least 64/],
  ])("rejects %o with a clear message", (o, message) => {
    expect(() => validateChunkerOptions(o)).toThrow(message);
    expect(() => chunkBuffer(Buffer.alloc(10), o)).toThrow(message);
  });
});

describe("boundaries are stable across versions", () => {
  // Frozen outputs: if these change, every stored file would chunk differently and re-upload.
  it("small options on a fixed 1 MiB + 123 byte input", () => {
    const lengths = chunkBuffer(pseudoRandomBytes(42, (1 << 20) + 123), small).map((c) => c.length);
    expect(lengths.length).toBe(GOLDEN_SMALL.count);
    expect(lengths.slice(0, 16)).toEqual(GOLDEN_SMALL.first);
    expect(sha256(Buffer.from(lengths.join(",")))).toBe(GOLDEN_SMALL.lengthsSha256);
  });

  it("default options on a fixed 40 MiB input", () => {
    const lengths = chunkBuffer(pseudoRandomBytes(7, 40 << 20)).map((c) => c.length);
    expect(lengths).toEqual(GOLDEN_DEFAULT);
  });
});

const GOLDEN_SMALL = {
  count: 900,
  first: [1107, 1381, 1078, 1066, 741, 1045, 308, 363, 755, 1079, 1737, 1294, 1548, 1243, 1651, 1407],
  lengthsSha256: "fc9b6f99c0d841982389537f4b7a35eef3c9d8d7542fe0b43f062309818fd0ac",
};
const GOLDEN_DEFAULT = [5430436, 4715036, 4641371, 5981155, 4830495, 4222216, 1073460, 5816785, 4940423, 291663];

/**
 * The definition of the boundaries, written plainly and in BigInt arithmetic so it shares no code
 * or integer tricks with the implementation: gear[i] is the murmur3 finalizer of the Weyl sequence
 * seed + (i + 1) * 0x9e3779b9; the hash is h = (2h + gear[byte]) mod 2^32 from byte minSize of the
 * chunk on; a cut follows the first byte where the top log2(avg) + 2 bits (before avgSize) or the
 * top log2(avg) - 2 bits (from avgSize on) of h are all zero.
 */
function referenceChunkLengths(data: Uint8Array, o: ChunkerOptions): number[] {
  const M32 = 0xffffffffn;
  const mul = (a: bigint, b: bigint): bigint => (a * b) & M32;
  const gear: bigint[] = [];
  for (let i = 1n; i <= 256n; i++) {
    let z = (0x5a7c4e11n + i * 0x9e3779b9n) & M32;
    z = mul(z ^ (z >> 16n), 0x85ebca6bn);
    z = mul(z ^ (z >> 13n), 0xc2b2ae35n);
    gear.push(z ^ (z >> 16n));
  }
  const bits = BigInt(Math.log2(o.avgSize));
  const top = (n: bigint): bigint => (M32 >> (32n - n)) << (32n - n);
  const strict = top(bits + 2n);
  const loose = top(bits - 2n);
  const lengths: number[] = [];
  for (let start = 0; start < data.length; ) {
    const remaining = data.length - start;
    let cut = Math.min(remaining, o.maxSize);
    let h = 0n;
    for (let i = o.minSize; i < Math.min(remaining, o.maxSize); i++) {
      h = (h * 2n + gear[data[start + i]]) & M32;
      if ((h & (i < o.avgSize ? strict : loose)) === 0n) {
        cut = i + 1;
        break;
      }
    }
    lengths.push(cut);
    start += cut;
  }
  return lengths;
}

describe("the implementation matches the plain definition", () => {
  it.each([
    ["small options", small, 300_000],
    ["uneven options", { minSize: 100, avgSize: 512, maxSize: 700 }, 100_000],
    ["a minSize above the hash window", { minSize: 3000, avgSize: 4096, maxSize: 9000 }, 300_000],
  ])("%s", (_, o, length) => {
    const data = pseudoRandomBytes(31, length);
    expect(chunkBuffer(data, o).map((c) => c.length)).toEqual(referenceChunkLengths(data, o));
  });
});

describe("findCutPoint", () => {
  it("returns the whole range when it is no longer than minSize", () => {
    const data = pseudoRandomBytes(1, 1000);
    expect(findCutPoint(data, 0, 0, small)).toBe(0);
    expect(findCutPoint(data, 10, 10 + small.minSize, small)).toBe(small.minSize);
    expect(findCutPoint(data, 500, 600, small)).toBe(100);
  });

  it("cuts at maxSize when no boundary comes first", () => {
    // With the average just below the maximum, most chunks find no boundary in time.
    const o = { minSize: 256, avgSize: 1024, maxSize: 1025 };
    const lengths = chunkBuffer(pseudoRandomBytes(3, 1 << 20), o).map((c) => c.length);
    expect(Math.max(...lengths)).toBe(1025);
    expect(lengths.filter((n) => n === 1025).length).toBeGreaterThan(lengths.length / 2);
  });

  it("depends only on the bytes from start on, not on their place in the array", () => {
    fc.assert(
      fc.property(fc.integer(), fc.nat({ max: 5000 }), fc.nat({ max: 10_000 }), (seed, start, length) => {
        const data = pseudoRandomBytes(seed, start + length + 100);
        const inPlace = findCutPoint(data, start, start + length, small);
        expect(inPlace).toBe(findCutPoint(data.subarray(start, start + length), 0, length, small));
        expect(inPlace).toBeLessThanOrEqual(Math.min(length, small.maxSize));
      }),
    );
  });

  it("rejects a range outside the data", () => {
    const data = Buffer.alloc(10);
    expect(() => findCutPoint(data, 5, 11, small)).toThrow(RangeError);
    expect(() => findCutPoint(data, 6, 5, small)).toThrow(RangeError);
    expect(() => findCutPoint(data, -1, 5, small)).toThrow(RangeError);
  });
});

describe("chunkBuffer", () => {
  it("splits any input into chunks that concatenate back to it, each within [min, max]", () => {
    fc.assert(
      fc.property(fc.integer(), fc.nat({ max: 64 * 1024 }), (seed, length) => {
        const data = pseudoRandomBytes(seed, length);
        expectWellFormed(chunkBuffer(data, small), data, small);
      }),
    );
  });

  it("yields nothing for an empty input and one chunk for an input of at most minSize", () => {
    expect(chunkBuffer(Buffer.alloc(0), small)).toEqual([]);
    const tiny = pseudoRandomBytes(5, small.minSize);
    expect(chunkBuffer(tiny, small)).toEqual([tiny]);
  });

  it("returns views of the input rather than copies", () => {
    const data = pseudoRandomBytes(9, 100_000);
    for (const c of chunkBuffer(data, small)) expect(c.buffer).toBe(data.buffer);
  });

  it("produces chunks near the average size on random data", () => {
    const lengths = chunkBuffer(pseudoRandomBytes(11, 4 << 20), small).map((c) => c.length);
    const mean = lengths.reduce((a, b) => a + b, 0) / lengths.length;
    expect(mean).toBeGreaterThan(small.avgSize * 0.75);
    expect(mean).toBeLessThan(small.avgSize * 1.5);
  });

  it("handles highly repetitive input (runs of one byte) within the bounds", () => {
    const data = Buffer.concat([Buffer.alloc(50_000, 0), Buffer.alloc(50_000, 0xff), pseudoRandomBytes(2, 10_000)]);
    expectWellFormed(chunkBuffer(data, small), data, small);
  });
});

describe("a boundary depends only on nearby bytes", () => {
  it("an edit near the start leaves almost every later chunk unchanged", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.nat({ max: 4096 }),
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.nat({ max: 200 }),
        (seed, at, inserted, deleted) => {
          const original = pseudoRandomBytes(seed, 256 * 1024);
          const edited = Buffer.concat([original.subarray(0, at), inserted, original.subarray(at + deleted)]);
          const before = chunkBuffer(original, small).map(sha256);
          const after = new Set(chunkBuffer(edited, small).map(sha256));
          const shared = before.filter((h) => after.has(h)).length;
          // Only the chunks around the edit (and until the cut points line up again) may differ.
          expect(shared).toBeGreaterThanOrEqual(before.length * 0.9);
          expect(after.has(before[before.length - 1])).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe("chunkStream", () => {
  it("finds the same boundaries however the stream is split into pieces", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer(),
        fc.nat({ max: 40_000 }),
        fc.array(fc.integer({ min: 1, max: 6000 }), { minLength: 1, maxLength: 20 }),
        async (seed, length, sizes) => {
          const data = pseudoRandomBytes(seed, length);
          const streamed = await collect(chunkStream(pieces(data, sizes), small));
          expect(streamed.map(sha256)).toEqual(chunkBuffer(data, small).map(sha256));
          expectWellFormed(streamed, data, small);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("copes with one-byte pieces and empty pieces", async () => {
    const data = pseudoRandomBytes(13, 20_000);
    async function* trickle(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < data.length; i++) {
        yield new Uint8Array(0);
        yield data.subarray(i, i + 1);
      }
    }
    const streamed = await collect(chunkStream(trickle(), small));
    expect(streamed.map(sha256)).toEqual(chunkBuffer(data, small).map(sha256));
  });

  it("yields nothing for a 0-byte stream or a stream of empty pieces", async () => {
    expect(await collect(chunkStream(pieces(Buffer.alloc(0), [1]), small))).toEqual([]);
    async function* empties(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(0);
      yield Buffer.alloc(0);
    }
    expect(await collect(chunkStream(empties(), small))).toEqual([]);
  });

  it("reads ahead no more than maxSize plus one piece", async () => {
    const data = pseudoRandomBytes(17, 200_000);
    const pieceSize = 1500;
    let pulled = 0;
    let consumed = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const p of pieces(data, [pieceSize])) {
        pulled += p.length;
        yield p;
      }
    }
    for await (const c of chunkStream(counted(), small)) {
      consumed += c.length;
      expect(pulled - consumed).toBeLessThan(small.maxSize + pieceSize);
    }
    expect(consumed).toBe(data.length);
  });

  it("yields views of the pieces for chunks that do not straddle pieces", async () => {
    const data = pseudoRandomBytes(19, 300_000);
    const chunks = await collect(chunkStream(pieces(data, [data.length]), small));
    for (const c of chunks) expect(c.buffer).toBe(data.buffer);
  });

  it("uses the default options when none are given", async () => {
    const data = pseudoRandomBytes(23, 3 << 20);
    const chunks = await collect(chunkStream(pieces(data, [1 << 20])));
    expect(chunks.map((c) => c.length)).toEqual(chunkBuffer(data).map((c) => c.length));
  });
});

describe("the pending input of a chunked stream", () => {
  it("lets go of every piece once its bytes are taken: memory stays at a few pieces, not the whole stream", () => {
    // A 5 GiB upload peaked at 5.4 GiB of resident memory: pieces taken across (a chunk straddling
    // two) stayed in the list until 1,024 of them (8 GiB of 8 MiB reads) had gone by.
    const MiB = 1024 * 1024;
    const pending = new PendingPieces();
    let peak = 0;
    let taken = 0;
    for (let i = 0; i < 200; i++) {
      pending.push(new Uint8Array(MiB));
      while (pending.length >= 700 * 1024) taken += pending.take(700 * 1024).length;
      peak = Math.max(peak, pending.heldBytes());
    }
    while (pending.length > 0) taken += pending.take(Math.min(pending.length, 700 * 1024)).length;
    expect(taken).toBe(200 * MiB);
    expect(peak).toBeLessThanOrEqual(2 * MiB);
    expect(pending.heldBytes()).toBe(0);
  });
});
