import { create } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlockInspectionSchema } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { BUCKETS, ProblemList, classify, count, emptyCounts, planRanges } from "./findings.js";

const inspection = (fields: Partial<{ found: boolean; state: string; shardsTotal: number; shardsGood: number; readable: boolean; lost: boolean }>) =>
  create(BlockInspectionSchema, { found: true, state: "live", shardsTotal: 6, shardsGood: 6, readable: true, lost: false, ...fields });

describe("classifying an inspected block", () => {
  it("a block with every shard good is no problem; one shard short is degraded, not unreadable", () => {
    expect(classify(inspection({}))).toBeUndefined();
    expect(classify(inspection({ shardsGood: 5 }))).toBe("degraded");
  });

  it("fewer than k good shards is lost when more than m are proven gone, else unavailable", () => {
    expect(classify(inspection({ shardsGood: 3, readable: false, lost: true }))).toBe("lost");
    expect(classify(inspection({ shardsGood: 3, readable: false }))).toBe("unavailable");
  });

  it("a reference to a block the index does not hold as live is a missing index row, whatever its shards", () => {
    expect(classify(inspection({ found: false, state: "", shardsTotal: 0, shardsGood: 0, readable: false }))).toBe("missing_index");
    expect(classify(inspection({ state: "deleting" }))).toBe("missing_index");
    expect(classify(inspection({ state: "writing", shardsGood: 0, readable: false }))).toBe("missing_index");
  });

  it("counts: unreadable = lost + unavailable, and below full redundancy includes the unreadable ones", () => {
    const counts = emptyCounts();
    for (const b of [
      inspection({}), inspection({ shardsGood: 5 }), inspection({ shardsGood: 2, readable: false, lost: true }),
      inspection({ shardsGood: 3, readable: false }), inspection({ found: false, state: "", shardsTotal: 0, shardsGood: 0, readable: false }),
    ]) count(counts, b);
    expect(counts).toEqual({ blocksChecked: 5, blocksUnreadable: 2, blocksLost: 1, blocksBelowFullRedundancy: 3, referencesToMissingBlocks: 1 });
  });
});

describe("the bounded list of problem blocks", () => {
  it("when full, a degraded block gives way to a lost one; a degraded one is only counted", () => {
    const list = new ProblemList(2);
    list.add("aa", "degraded", inspection({ shardsGood: 5 }));
    list.add("bb", "degraded", inspection({ shardsGood: 5 }));
    list.add("cc", "degraded", inspection({ shardsGood: 5 }));
    list.add("dd", "lost", inspection({ shardsGood: 1, readable: false, lost: true }));
    expect(list.sorted().map((p) => [p.hex, p.kind])).toEqual([["dd", "lost"], ["bb", "degraded"]]);
    expect(list.notListed).toBe(2);
  });

  it("unreadable blocks are kept over later ones when nothing degraded is left to evict", () => {
    const list = new ProblemList(1);
    list.add("aa", "unavailable", inspection({ shardsGood: 3, readable: false }));
    list.add("bb", "lost", inspection({ shardsGood: 1, readable: false, lost: true }));
    expect(list.sorted().map((p) => p.hex)).toEqual(["aa"]);
    expect(list.notListed).toBe(1);
  });
});

describe("planning hash ranges", () => {
  it("one range over the whole hash space when everything fits", () => {
    const refs = new Float64Array(BUCKETS);
    refs[7] = 10;
    refs[60_000] = 10;
    expect(planRanges(refs, 100)).toEqual([[0, BUCKETS]]);
    expect(planRanges(new Float64Array(BUCKETS), 100)).toEqual([[0, BUCKETS]]);
  });

  it("ranges are contiguous, cover every bucket, and each holds at most the limit unless one bucket alone exceeds it", () => {
    fc.assert(fc.property(fc.array(fc.nat(50), { minLength: 1, maxLength: 200 }), fc.integer({ min: 1, max: 120 }), (counts, limit) => {
      const ranges = planRanges(counts, limit);
      expect(ranges[0][0]).toBe(0);
      expect(ranges.at(-1)![1]).toBe(counts.length);
      for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBe(ranges[i - 1][1]);
      for (const [from, to] of ranges) {
        expect(to).toBeGreaterThan(from);
        const sum = counts.slice(from, to).reduce((a, b) => a + b, 0);
        if (sum > limit) expect(counts.slice(from, to).filter((n) => n > 0).length).toBe(1);
      }
    }));
  });
});
