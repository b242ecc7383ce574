import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ErasureCodec, NotEnoughShardsError } from "./erasure.js";

/** The shard list with the given indices dropped. */
function without(shards: Buffer[], missing: Iterable<number>): (Buffer | undefined)[] {
  const out: (Buffer | undefined)[] = [...shards];
  for (const i of missing) out[i] = undefined;
  return out;
}

/** Every subset of {0..n-1} with at most `max` members. */
function subsetsUpTo(n: number, max: number): number[][] {
  const out: number[][] = [];
  for (let mask = 0; mask < 1 << n; mask++) {
    const set = [...Array(n).keys()].filter((i) => mask & (1 << i));
    if (set.length <= max) out.push(set);
  }
  return out;
}

describe("ErasureCodec construction", () => {
  it.each([
    [0, 2, /1 to 24 data shards/],
    [25, 2, /1 to 24 data shards/],
    [1.5, 2, /data shards/],
    [4, -1, /0 to 6 parity shards/],
    [4, 7, /0 to 6 parity shards/],
  ])("rejects k=%s m=%s with a clear error", (k, m, message) => {
    expect(() => new ErasureCodec(k, m)).toThrow(message);
  });

  it("accepts the library's limits and pure striping", () => {
    expect(() => new ErasureCodec(24, 6)).not.toThrow();
    expect(() => new ErasureCodec(1, 0)).not.toThrow();
  });
});

describe("shardSizeFor", () => {
  it.each([
    [4, 0, 8],
    [4, 1, 8],
    [4, 32, 8],
    [4, 33, 16],
    [3, 100, 40],
    [1, 9, 16],
    [4, 4 * 1024 * 1024 + 3, 1024 * 1024 + 8],
  ])("k=%s, %s bytes -> %s-byte shards", (k, length, size) => {
    expect(new ErasureCodec(k, 2).shardSizeFor(length)).toBe(size);
  });

  it("rejects negative or fractional lengths", () => {
    const codec = new ErasureCodec(4, 2);
    expect(() => codec.shardSizeFor(-1)).toThrow(RangeError);
    expect(() => codec.shardSizeFor(1.5)).toThrow(RangeError);
  });
});

describe("encode", () => {
  it("returns k data shards (the block in order, zero-padded) and m parity shards, all one size", async () => {
    const codec = new ErasureCodec(4, 2);
    const block = randomBytes(100);
    const shards = await codec.encode(block);
    expect(shards).toHaveLength(6);
    for (const s of shards) expect(s.length).toBe(32);
    const joined = Buffer.concat(shards.slice(0, 4));
    expect(joined.subarray(0, 100).equals(block)).toBe(true);
    expect(joined.subarray(100).equals(Buffer.alloc(28))).toBe(true);
  });

  it("is deterministic: the same block always gets the same parity", async () => {
    const codec = new ErasureCodec(5, 3);
    const block = randomBytes(10_000);
    const a = await codec.encode(block);
    const b = await codec.encode(Buffer.from(block));
    expect(a.map((s) => s.toString("hex"))).toEqual(b.map((s) => s.toString("hex")));
  });

  it("copies the block once: data shards share one buffer, parity shards another", async () => {
    const shards = await new ErasureCodec(3, 2).encode(randomBytes(5000));
    expect(shards[1].buffer).toBe(shards[0].buffer);
    expect(shards[2].buffer).toBe(shards[0].buffer);
    expect(shards[4].buffer).toBe(shards[3].buffer);
  });
});

describe("a block round-trips", () => {
  const codec = new ErasureCodec(4, 2);
  const lengths = [0, 1, 7, 8, 4 * 8 - 1, 4 * 1024 * 1024 + 3];

  it.each(lengths)("with every shard present (%s bytes)", async (length) => {
    const block = randomBytes(length);
    const decoded = await codec.decode(await codec.encode(block), length);
    expect(decoded.equals(block)).toBe(true);
  });

  it.each(lengths)("with two data shards lost (%s bytes)", async (length) => {
    const block = randomBytes(length);
    const decoded = await codec.decode(without(await codec.encode(block), [0, 2]), length);
    expect(decoded.equals(block)).toBe(true);
  });

  it.each(lengths)("with one data and one parity shard lost (%s bytes)", async (length) => {
    const block = randomBytes(length);
    const decoded = await codec.decode(without(await codec.encode(block), [3, 5]), length);
    expect(decoded.equals(block)).toBe(true);
  });
});

describe("any k shards rebuild the block", () => {
  it("for random k, m, data and lost shards", async () => {
    const scenario = fc
      .record({ k: fc.integer({ min: 1, max: 8 }), m: fc.integer({ min: 0, max: 4 }), length: fc.nat({ max: 5000 }) })
      .chain(({ k, m, length }) =>
        fc.record({
          k: fc.constant(k),
          m: fc.constant(m),
          data: fc.uint8Array({ minLength: length, maxLength: length }),
          missing: fc.uniqueArray(fc.nat({ max: k + m - 1 }), { maxLength: m }),
        }),
      );
    await fc.assert(
      fc.asyncProperty(scenario, async ({ k, m, data, missing }) => {
        const codec = new ErasureCodec(k, m);
        const shards = await codec.encode(data);
        const decoded = await codec.decode(without(shards, missing), data.length);
        expect(decoded.equals(data)).toBe(true);
        const rebuilt = await codec.reconstructShards(without(shards, missing), data.length);
        expect(rebuilt.map((s) => s.toString("hex"))).toEqual(shards.map((s) => s.toString("hex")));
      }),
      { numRuns: 300 },
    );
  });

  it("for every set of up to m lost shards of a 5+3 code", async () => {
    const codec = new ErasureCodec(5, 3);
    const block = randomBytes(777);
    const shards = await codec.encode(block);
    const sets = subsetsUpTo(8, 3);
    expect(sets).toHaveLength(1 + 8 + 28 + 56);
    for (const missing of sets) {
      const decoded = await codec.decode(without(shards, missing), block.length);
      expect(decoded.equals(block), `lost ${missing.join(",")}`).toBe(true);
    }
  });
});

describe("reconstructShards", () => {
  it("rebuilds lost data and parity shards byte-for-byte", async () => {
    const codec = new ErasureCodec(6, 3);
    const block = randomBytes(65_536 + 17);
    const shards = await codec.encode(block);
    for (const missing of [[0], [7], [1, 8], [0, 3, 6], [6, 7, 8], [2, 4, 5]]) {
      const rebuilt = await codec.reconstructShards(without(shards, missing), block.length);
      expect(rebuilt).toHaveLength(9);
      rebuilt.forEach((s, i) => expect(s.equals(shards[i]), `shard ${i} with ${missing.join(",")} lost`).toBe(true));
    }
  });

  it("returns the shards as they are when none is missing", async () => {
    const codec = new ErasureCodec(3, 2);
    const shards = await codec.encode(randomBytes(300));
    const rebuilt = await codec.reconstructShards(shards, 300);
    rebuilt.forEach((s, i) => expect(s.equals(shards[i])).toBe(true));
  });
});

describe("decode", () => {
  it("joins the data shards without consulting parity when all are present", async () => {
    const codec = new ErasureCodec(4, 2);
    const block = randomBytes(1000);
    const shards = await codec.encode(block);
    // Wrong parity would corrupt a computed decode; the fast path must not read it.
    shards[4] = randomBytes(shards[4].length);
    shards[5] = randomBytes(shards[5].length);
    expect((await codec.decode(shards, block.length)).equals(block)).toBe(true);
  });

  it("throws NotEnoughShardsError when fewer than k shards are present", async () => {
    const codec = new ErasureCodec(4, 2);
    const shards = without(await codec.encode(randomBytes(500)), [0, 3, 5]);
    const err = await codec.decode(shards, 500).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotEnoughShardsError);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ present: 3, needed: 4, name: "NotEnoughShardsError" });
    await expect(codec.reconstructShards(shards, 500)).rejects.toBeInstanceOf(NotEnoughShardsError);
    await expect(codec.decode([undefined, undefined, undefined, undefined, undefined, undefined], 500)).rejects.toMatchObject({ present: 0 });
  });

  it("with no parity (striping) needs every data shard", async () => {
    const codec = new ErasureCodec(3, 0);
    const block = randomBytes(1234);
    const shards = await codec.encode(block);
    expect(shards).toHaveLength(3);
    expect((await codec.decode(shards, block.length)).equals(block)).toBe(true);
    await expect(codec.decode(without(shards, [1]), block.length)).rejects.toBeInstanceOf(NotEnoughShardsError);
  });

  it("rejects shards of the wrong size or a wrong number of slots", async () => {
    const codec = new ErasureCodec(4, 2);
    const shards = await codec.encode(randomBytes(500));
    await expect(codec.decode(shards, 5000)).rejects.toThrow(/shard 0 is 128 bytes/);
    await expect(codec.decode(shards.slice(0, 5), 500)).rejects.toThrow(/expected 6 shard slots/);
  });
});
