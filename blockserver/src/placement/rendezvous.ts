import { createHash } from "node:crypto";

/**
 * Rendezvous (highest random weight) placement: every node gets a score from hash(block, node)
 * and a block's shards go to the best-scoring nodes, in order. Deterministic, balanced, and when a
 * node leaves only the shards it held move.
 */
export function rankNodes(blockHash: Uint8Array, nodeNames: readonly string[]): string[] {
  const scored = nodeNames.map((name) => {
    const digest = createHash("sha256").update(blockHash).update(name).digest();
    return { name, score: digest.readBigUInt64BE(0) };
  });
  scored.sort((a, b) => (a.score === b.score ? 0 : a.score > b.score ? -1 : 1));
  return scored.map((s) => s.name);
}
