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

/**
 * What one attempt to find a shard showed. Unreachable says nothing about the bytes (node down,
 * slow, answering errors); gone is proven: absent or failing its checksum on a node that answered,
 * and not found on any other node either.
 */
export type ShardStatus = "ok" | "unreachable" | "gone";

export interface ShardFinding {
  status: ShardStatus;
  /** The node the shard was found on, or the one that was tried. */
  node: string;
}

/** How a block stands after its shards were sought. */
export type BlockVerdict =
  | { kind: "readable"; good: number }
  /** Fewer than k shards could be read, but at most m are proven gone: a node coming back restores it. */
  | { kind: "unavailable"; good: number; gone: number; unreachableNodes: string[] }
  /** More than m shards are proven gone: no k shards will ever be found again. */
  | { kind: "lost"; good: number; gone: number };

/**
 * Read quorum: any k good shards rebuild the block. A block is lost only when more than m of its
 * shards are proven gone; fewer than k readable with at most m gone is unavailable (retryable).
 */
export function blockVerdict(findings: ReadonlyArray<ShardFinding>, k: number, m: number): BlockVerdict {
  const good = findings.filter((f) => f.status === "ok").length;
  const gone = findings.filter((f) => f.status === "gone").length;
  if (good >= k) return { kind: "readable", good };
  if (gone > m) return { kind: "lost", good, gone };
  const unreachableNodes = [...new Set(findings.filter((f) => f.status === "unreachable").map((f) => f.node))].sort();
  return { kind: "unavailable", good, gone, unreachableNodes };
}
