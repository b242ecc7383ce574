import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { rankNodes } from "./rendezvous.js";

const nodes = ["minio-0", "minio-1", "minio-2", "minio-3", "minio-4", "minio-5"];

describe("rendezvous placement", () => {
  it("is deterministic and ranks every node once", () => {
    const h = randomBytes(32);
    expect(rankNodes(h, nodes)).toEqual(rankNodes(h, [...nodes].reverse()));
    expect(new Set(rankNodes(h, nodes)).size).toBe(nodes.length);
  });

  it("spreads first choices evenly over nodes", () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 6000; i++) {
      const first = rankNodes(randomBytes(32), nodes)[0];
      counts.set(first, (counts.get(first) ?? 0) + 1);
    }
    for (const n of nodes) expect(counts.get(n)).toBeGreaterThan(800);
  });

  it("removing a node keeps the relative order of the others", () => {
    const h = randomBytes(32);
    const full = rankNodes(h, nodes);
    const without = rankNodes(h, nodes.filter((n) => n !== "minio-3"));
    expect(without).toEqual(full.filter((n) => n !== "minio-3"));
  });
});
