import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { blockVerdict, defaultWriteQuorum, meetsWriteQuorum, validateWriteQuorum, type ShardFinding, type ShardStatus } from "./quorum.js";

const findings = (statuses: ShardStatus[]): ShardFinding[] => statuses.map((status, i) => ({ status, node: `minio-${i}` }));
const status = fc.constantFrom<ShardStatus>("ok", "unreachable", "gone");
const geometry = fc.tuple(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 0, max: 4 }));

describe("write quorum", () => {
  it("defaults to k+1, bounded by k and k+m", () => {
    expect(defaultWriteQuorum(4, 2)).toBe(5);
    expect(defaultWriteQuorum(4, 0)).toBe(4);
    expect(() => validateWriteQuorum(3, 4, 2)).toThrow(/between k=4 and k\+m=6/);
    expect(() => validateWriteQuorum(7, 4, 2)).toThrow();
    expect(meetsWriteQuorum({ stored: [0, 1, 2, 3, 4], failed: [] }, 5)).toBe(true);
    expect(meetsWriteQuorum({ stored: [0, 1, 2, 3], failed: [] }, 5)).toBe(false);
  });
});

describe("block verdict: a block is lost only when more than m shards are proven gone", () => {
  it("any k good shards make a block readable, whatever the others are", () => {
    fc.assert(fc.property(geometry, fc.array(status, { minLength: 14, maxLength: 14 }), ([k, m], all) => {
      const s = all.slice(0, k + m);
      const v = blockVerdict(findings(s), k, m);
      const good = s.filter((x) => x === "ok").length;
      const gone = s.filter((x) => x === "gone").length;
      if (good >= k) expect(v.kind).toBe("readable");
      else if (gone > m) expect(v.kind).toBe("lost");
      else expect(v.kind).toBe("unavailable");
    }));
  });

  it("unreachable shards never count towards loss: with every shard unreachable the block is unavailable, not lost", () => {
    fc.assert(fc.property(geometry, ([k, m]) => {
      const v = blockVerdict(findings(new Array(k + m).fill("unreachable")), k, m);
      expect(v.kind).toBe("unavailable");
    }));
  });

  it("the issue's sequence: two nodes were down (now back) and a third disk replaced leaves 4+2 readable", () => {
    expect(blockVerdict(findings(["ok", "ok", "ok", "gone", "ok", "ok"]), 4, 2).kind).toBe("readable");
  });

  it("three nodes down reads as unavailable and names them; three shards proven gone is lost", () => {
    const down = blockVerdict(findings(["ok", "unreachable", "ok", "unreachable", "ok", "unreachable"]), 4, 2);
    expect(down).toEqual({ kind: "unavailable", good: 3, gone: 0, unreachableNodes: ["minio-1", "minio-3", "minio-5"] });
    expect(blockVerdict(findings(["ok", "gone", "ok", "gone", "ok", "gone"]), 4, 2)).toEqual({ kind: "lost", good: 3, gone: 3 });
    expect(blockVerdict(findings(["ok", "gone", "ok", "gone", "ok", "unreachable"]), 4, 2).kind).toBe("unavailable");
  });
});
