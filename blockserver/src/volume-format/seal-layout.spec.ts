import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { planSealLayout } from "./seal-layout.js";

describe("planSealLayout", () => {
  it("fills shards in order, moving a record that would straddle to the next shard", () => {
    // 4 records of 40 in 2 shards: 80 each.
    expect(planSealLayout([40, 40, 40, 40], 2)).toEqual({ shardSize: 80, places: [{ shard: 0, offset: 0 }, { shard: 0, offset: 40 }, { shard: 1, offset: 0 }, { shard: 1, offset: 40 }] });
    // 30 + 60 + 30 in 2 shards: 90 would cut the third; the smallest size that fits is 90 (30+60 | 30), aligned to 96.
    expect(planSealLayout([30, 60, 30], 2)).toEqual({ shardSize: 96, places: [{ shard: 0, offset: 0 }, { shard: 0, offset: 30 }, { shard: 1, offset: 0 }] });
    // One record larger than an even share sets the size.
    expect(planSealLayout([10, 100, 10], 4).shardSize).toBe(104);
    expect(planSealLayout([], 4)).toEqual({ shardSize: 8, places: [] });
  });

  it("refuses what cannot be laid out", () => {
    expect(() => planSealLayout([10], 0)).toThrow(/k must be/);
    expect(() => planSealLayout([10, 0], 2)).toThrow(/record 1 has length 0/);
  });

  it("never straddles, keeps order, uses at most k shards, and wastes less than one record per shard", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 53, max: 5000 }), { maxLength: 60 }), fc.integer({ min: 1, max: 12 }), (lengths, k) => {
        const { shardSize, places } = planSealLayout(lengths, k);
        expect(shardSize % 8).toBe(0);
        expect(places).toHaveLength(lengths.length);
        const total = lengths.reduce((a, b) => a + b, 0);
        const largest = Math.max(0, ...lengths);
        expect(shardSize).toBeLessThanOrEqual(Math.max(8, Math.ceil((Math.ceil(total / k) + largest) / 8) * 8));
        for (const [i, p] of places.entries()) {
          expect(p.shard).toBeLessThan(k);
          expect(p.offset + lengths[i]).toBeLessThanOrEqual(shardSize);
          if (i > 0) {
            const q = places[i - 1];
            // In order: the same shard right after the previous record, or the start of the next shard.
            if (p.shard === q.shard) expect(p.offset).toBe(q.offset + lengths[i - 1]);
            else expect(p).toEqual({ shard: q.shard + 1, offset: 0 });
          }
        }
        // Minimal: one alignment step smaller would not fit in k shards (or would cut the largest record).
        const smaller = shardSize - 8;
        if (smaller >= Math.max(largest, 1) && lengths.length > 0) {
          let shard = 0;
          let offset = 0;
          for (const n of lengths) {
            if (offset + n > smaller) [shard, offset] = [shard + 1, 0];
            offset += n;
          }
          expect(shard + 1).toBeGreaterThan(k);
        }
      }),
    );
  });
});
