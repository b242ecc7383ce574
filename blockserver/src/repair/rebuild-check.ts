import { createHash } from "node:crypto";
import type { ErasureCodec } from "../codec/erasure.js";

/**
 * Sets of k shard indexes (out of `width`) that together use every shard in `rebuilt` at least
 * once: each set is one decode that a rebuilt shard takes part in. Rebuilt shards come first in
 * each set, topped up with others, so a set never holds more than k of them.
 */
export function decodeSets(rebuilt: readonly number[], k: number, width: number): number[][] {
  const sets: number[][] = [];
  for (let at = 0; at < rebuilt.length; at += k) {
    const set = rebuilt.slice(at, at + k);
    for (let i = 0; i < width && set.length < k; i++) if (!set.includes(i)) set.push(i);
    sets.push(set);
  }
  return sets;
}

/**
 * Whether the block decoded with the `rebuilt` shards (from `all`, every shard's payload) hashes
 * to `hash`. A shard can pass its own checksum and still hold wrong bytes (written wrong, or
 * rotted in memory before its checksum was taken); shards rebuilt from it would be wrong too, and
 * writing them would spread the damage to shards that were good. Checking costs one decode and one
 * hash per k rebuilt shards.
 */
export async function rebuiltShardsDecode(
  codec: ErasureCodec, all: readonly Buffer[], rebuilt: readonly number[], size: number, hash: Buffer,
): Promise<boolean> {
  for (const set of decodeSets(rebuilt, codec.dataShards, all.length)) {
    const shards = all.map((s, i) => (set.includes(i) ? s : undefined));
    const block = await codec.decode(shards, size);
    if (!createHash("sha256").update(block).digest().equals(hash)) return false;
  }
  return true;
}
