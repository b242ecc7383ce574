/**
 * Quorum decisions live here, in one place.
 *
 * Write quorum. A block is k data + m parity shards, one per node. A write is acknowledged once
 * `writeQuorum` shards are durably stored (default k + 1, at most k + m): then losing any one more
 * node still leaves k shards, and every shard that could not be written is recorded as missing and
 * rebuilt by repair as soon as its node is back (or moved to another node), so the block returns to
 * full k + m redundancy, i.e. survives any m further losses, before it is reported healthy. With
 * writeQuorum = k + m a write needs every node (strict mode). Below the quorum the write fails with
 * UNAVAILABLE and no live index entry is left behind.
 *
 * Read quorum. Any k shards that pass their checksums rebuild the block; fewer is DATA_LOSS.
 */
export function defaultWriteQuorum(k: number, m: number): number {
  return m === 0 ? k : k + 1;
}

export function validateWriteQuorum(quorum: number, k: number, m: number): number {
  if (!Number.isInteger(quorum) || quorum < k || quorum > k + m) {
    throw new Error(`write quorum must be between k=${k} and k+m=${k + m}, got ${quorum}`);
  }
  return quorum;
}

/** Outcome of trying to store a block's shards. */
export interface WriteOutcome {
  stored: number[];
  failed: { index: number; node: string; reason: string }[];
}

export function meetsWriteQuorum(outcome: WriteOutcome, quorum: number): boolean {
  return outcome.stored.length >= quorum;
}

/** Reduces per-shard failures into one message a person can act on. */
export function describeFailures(outcome: WriteOutcome, width: number): string {
  const byReason = outcome.failed.map((f) => `${f.node}: ${f.reason}`).join("; ");
  return `${outcome.failed.length} of ${width} shard writes failed (${byReason})`;
}
