/**
 * Where each record of a volume goes when the volume is sealed: its records, in order, are laid out
 * across k data shards of one size so that no record straddles two shards (a healthy read of a
 * packed block is then one ranged GET of one data shard), and the m parity shards are coded from
 * the k. Each shard's tail after its last record is zero padding (scanRecords stops there).
 */
export interface SealLayout {
  /** Bytes of every data (and parity) shard: a multiple of `align`. */
  shardSize: number;
  /** Per record, in the order given: the data shard holding it and its offset there. */
  places: { shard: number; offset: number }[];
}

/**
 * The smallest shard size (a multiple of `align`, which the Reed-Solomon library needs) at which
 * the records, filled in order, each into the current shard while it fits and else into the next,
 * fit in k shards; and where that puts each. Filling in order keeps a volume's records in the order
 * they were written. The size is at most ceil(total / k) + the largest record (+ alignment): each
 * shard wastes less than one record.
 */
export function planSealLayout(recordLengths: readonly number[], k: number, align = 8): SealLayout {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
  if (!Number.isInteger(align) || align < 1) throw new RangeError(`align must be a positive integer, got ${align}`);
  for (const [i, n] of recordLengths.entries()) {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`record ${i} has length ${n}: every record is at least its header`);
  }
  const total = recordLengths.reduce((a, b) => a + b, 0);
  const largest = Math.max(0, ...recordLengths);
  const up = (n: number) => Math.max(align, Math.ceil(n / align) * align);
  // Fitting is monotone in the size: search the aligned sizes between the two bounds.
  let lo = up(Math.max(largest, Math.ceil(total / k)));
  let hi = up(Math.ceil(total / k) + largest);
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / align / 2) * align;
    if (fill(recordLengths, mid).shardsUsed <= k) hi = mid;
    else lo = mid + align;
  }
  return { shardSize: lo, places: fill(recordLengths, lo).places };
}

function fill(recordLengths: readonly number[], shardSize: number): { shardsUsed: number; places: { shard: number; offset: number }[] } {
  const places: { shard: number; offset: number }[] = [];
  let shard = 0;
  let offset = 0;
  for (const n of recordLengths) {
    if (offset + n > shardSize) {
      shard++;
      offset = 0;
    }
    places.push({ shard, offset });
    offset += n;
  }
  return { shardsUsed: recordLengths.length === 0 ? 0 : shard + 1, places };
}
