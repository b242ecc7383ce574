import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { takeGroup } from "./group-plan.js";

const w = (ns: number, id: string) => ({ ns: BigInt(ns), id });

describe("takeGroup", () => {
  it("takes one change per namespace in arrival order; a second change of a namespace waits in its place", () => {
    const queue = [w(1, "a"), w(2, "b"), w(1, "c"), w(3, "d"), w(2, "e")];
    const { group, rest } = takeGroup(queue, 10);
    expect(group.map((x) => x.id)).toEqual(["a", "b", "d"]);
    expect(rest.map((x) => x.id)).toEqual(["c", "e"]);
    // The next group takes the second changes.
    expect(takeGroup(rest, 10).group.map((x) => x.id)).toEqual(["c", "e"]);
  });

  it("stops at the size limit, leaving the rest in order", () => {
    const queue = [w(1, "a"), w(2, "b"), w(3, "c"), w(4, "d")];
    expect(takeGroup(queue, 2).group.map((x) => x.id)).toEqual(["a", "b"]);
    expect(takeGroup(queue, 2).rest.map((x) => x.id)).toEqual(["c", "d"]);
    expect(takeGroup([], 2)).toEqual({ group: [], rest: [] });
  });

  it("never loses, duplicates or reorders a namespace's changes, whatever the queue", () => {
    const entry = fc.record({ ns: fc.integer({ min: 1, max: 5 }).map(BigInt), id: fc.nat() });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 40 }), fc.integer({ min: 1, max: 8 }), (raw, max) => {
        const queue = raw.map((e, i) => ({ ...e, id: i }));
        const { group, rest } = takeGroup(queue, max);
        // Every change is in exactly one of the two, and the rest keeps its order.
        expect([...group, ...rest].map((x) => x.id).sort((a, b) => a - b)).toEqual(queue.map((x) => x.id));
        expect(rest.map((x) => x.id)).toEqual(queue.filter((x) => !group.includes(x)).map((x) => x.id));
        expect(group.length).toBe(Math.min(max, new Set(queue.map((x) => x.ns)).size));
        expect(new Set(group.map((x) => x.ns)).size).toBe(group.length);
        // Each taken change is the first waiting one of its namespace: no later one overtakes an earlier one.
        for (const g of group) expect(queue.find((x) => x.ns === g.ns)).toBe(g);
      }),
    );
  });
});
