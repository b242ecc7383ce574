import type { BlockInspection } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";

/** What is wrong with a referenced block, worst first. */
export type ProblemKind = "lost" | "unavailable" | "missing_index" | "degraded";

/** The verdict on one referenced block: a problem kind, or undefined when it is whole. */
export function classify(b: BlockInspection): ProblemKind | undefined {
  if (!b.found || b.state !== "live") return "missing_index";
  if (b.lost) return "lost";
  if (!b.readable) return "unavailable";
  if (b.shardsGood < b.shardsTotal) return "degraded";
  return undefined;
}

/** Whether a file using a block of this kind cannot be read now. */
export const isUnreadable = (kind: ProblemKind): boolean => kind !== "degraded";

/** Counts of one run, over every block inspected (listed or not). */
export interface VerifyCounts {
  blocksChecked: number;
  blocksUnreadable: number;
  blocksLost: number;
  blocksBelowFullRedundancy: number;
  referencesToMissingBlocks: number;
}

export const emptyCounts = (): VerifyCounts => ({
  blocksChecked: 0, blocksUnreadable: 0, blocksLost: 0, blocksBelowFullRedundancy: 0, referencesToMissingBlocks: 0,
});

/** Adds one inspected block to the counts and returns its problem kind, if any. */
export function count(counts: VerifyCounts, b: BlockInspection): ProblemKind | undefined {
  const kind = classify(b);
  counts.blocksChecked++;
  if (kind === "missing_index") counts.referencesToMissingBlocks++;
  if (kind === "lost" || kind === "unavailable") counts.blocksUnreadable++;
  if (kind === "lost") counts.blocksLost++;
  if (kind === "lost" || kind === "unavailable" || kind === "degraded") counts.blocksBelowFullRedundancy++;
  return kind;
}

/** A file version by its key, and the metadata shard it was read on. */
export interface AffectedFileRef {
  shardId: number;
  namespaceId: bigint;
  pathKey: Buffer;
  revision: bigint;
}

export interface Problem {
  hex: string;
  kind: ProblemKind;
  shardsGood: number;
  shardsTotal: number;
  files: AffectedFileRef[];
  /** (namespace, path key, revision) of the files above: a version is listed once even mid-move. */
  fileKeys: Set<string>;
  filesNotListed: number;
}

/**
 * The problem blocks kept for the report, at most `limit`: when full, a degraded block gives way
 * to an unreadable or missing one, so that a node down (everything degraded) cannot hide a loss.
 * Counts are kept apart (VerifyCounts), so nothing dropped here goes uncounted.
 */
export class ProblemList {
  readonly byHex = new Map<string, Problem>();
  private readonly degraded = new Set<string>();
  notListed = 0;

  constructor(private readonly limit: number) {}

  add(hex: string, kind: ProblemKind, b: BlockInspection): void {
    if (this.byHex.has(hex)) return;
    if (this.byHex.size >= this.limit) {
      const evict = kind === "degraded" ? undefined : this.degraded.values().next().value;
      this.notListed++;
      if (evict === undefined) return;
      this.byHex.delete(evict);
      this.degraded.delete(evict);
    }
    this.byHex.set(hex, { hex, kind, shardsGood: b.shardsGood, shardsTotal: b.shardsTotal, files: [], fileKeys: new Set(), filesNotListed: 0 });
    if (kind === "degraded") this.degraded.add(hex);
  }

  /** Worst first (lost, unavailable, missing_index, degraded), then by hash. */
  sorted(): Problem[] {
    const rank: Record<ProblemKind, number> = { lost: 0, unavailable: 1, missing_index: 2, degraded: 3 };
    return [...this.byHex.values()].sort((a, b) => rank[a.kind] - rank[b.kind] || (a.hex < b.hex ? -1 : a.hex > b.hex ? 1 : 0));
  }
}

/** Hash buckets: the first two bytes of a block hash. */
export const BUCKETS = 65_536;
export const bucketOf = (hash: Uint8Array): number => (hash[0] << 8) | hash[1];

/**
 * Splits the hash space into ranges of buckets [from, to), together covering all of it, each
 * referenced at most `limit` times, so that the distinct hashes of one range (never more than its
 * references) fit in memory. A single bucket over the limit gets a range of its own.
 */
export function planRanges(referencesPerBucket: ArrayLike<number>, limit: number): [number, number][] {
  const ranges: [number, number][] = [];
  let from = 0;
  let sum = 0;
  for (let b = 0; b < referencesPerBucket.length; b++) {
    const n = referencesPerBucket[b];
    if (sum > 0 && sum + n > limit) {
      ranges.push([from, b]);
      from = b;
      sum = 0;
    }
    sum += n;
  }
  // The ranges cover every bucket, so that references committed after the census are not skipped.
  if (sum > 0 || ranges.length === 0) ranges.push([from, referencesPerBucket.length]);
  else ranges[ranges.length - 1][1] = referencesPerBucket.length;
  return ranges;
}
