/** A change waiting on its shard for a group commit: the namespace whose state row it locks. */
export interface Waiting {
  ns: bigint;
}

/**
 * The next group of a shard's waiting changes, in arrival order: at most `max`, each namespace at
 * most once (a group applies its changes on one transaction each namespace's lock is taken in
 * once). A change passed over stays in the queue in its place, so one namespace's changes are taken
 * in the order they arrived, each by a later group than the one before it, and changes of other
 * namespaces do not wait behind them. A namespace a group in flight holds may be taken again: its
 * lock passes from that group to the next inside the database, without a round trip between.
 */
export function takeGroup<T extends Waiting>(queue: readonly T[], max: number): { group: T[]; rest: T[] } {
  const group: T[] = [];
  const rest: T[] = [];
  const taken = new Set<bigint>();
  for (const w of queue) {
    if (group.length < max && !taken.has(w.ns)) {
      group.push(w);
      taken.add(w.ns);
    } else {
      rest.push(w);
    }
  }
  return { group, rest };
}
