import { createHash, randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ErasureCodec } from "../codec/erasure.js";
import { decodeSets, rebuiltShardsDecode } from "./rebuild-check.js";

describe("checking rebuilt shards against the block hash", () => {
  it("every rebuilt shard takes part in some decode, and each decode uses exactly k distinct shards", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 0, max: 4 }), fc.infiniteStream(fc.boolean()), (k, m, picks) => {
      const width = k + m;
      const rebuilt = Array.from({ length: width }, (_, i) => i).filter(() => picks.next().value);
      const sets = decodeSets(rebuilt, k, width);
      for (const r of rebuilt) expect(sets.some((s) => s.includes(r))).toBe(true);
      for (const s of sets) {
        expect(new Set(s).size).toBe(k);
        expect(s.every((i) => i >= 0 && i < width)).toBe(true);
      }
    }));
  });

  it("shards rebuilt from good shards decode to the hash; one wrong byte in any of them does not", async () => {
    const codec = new ErasureCodec(4, 2);
    const data = randomBytes(50_000);
    const hash = createHash("sha256").update(data).digest();
    const all = await codec.encode(data);
    for (const rebuilt of [[0], [5], [1, 4], [0, 1, 2, 3, 4, 5]]) {
      expect(await rebuiltShardsDecode(codec, all, rebuilt, data.length, hash)).toBe(true);
      for (const bad of rebuilt) {
        const wrong = all.map((s, i) => (i === bad ? Buffer.from(s).fill(7, 0, 1) : s));
        if (wrong[bad][0] === all[bad][0]) wrong[bad][0] ^= 1;
        expect(await rebuiltShardsDecode(codec, wrong, rebuilt, data.length, hash)).toBe(false);
      }
    }
  });
});
