/** What a subscriber is told about one namespace: its latest cursor, and when the oldest untold advance was published. */
export interface Pending<M = unknown> {
  cursor: bigint;
  /** Publish time (ms since the epoch) of the oldest advance folded into this one; 0 when unknown. */
  publishedAt: number;
  /** The message of the latest advance, made once per publish and shared by every subscriber. */
  message?: M;
}

/**
 * One stream's (or long poll's) view of the fan-out. It keeps only the latest cursor per
 * namespace, so a slow consumer costs one map entry per namespace and never blocks delivery to
 * the others.
 */
export class Subscriber<M = unknown> {
  private readonly pending = new Map<bigint, Pending<M>>();
  private wake?: () => void;
  /** Advances folded into one already pending (the consumer had not taken it yet). */
  coalesced = 0;

  /** The namespaces watched (an ended membership takes one out: see Fanout.revoke); `owner` is the user (or "service"). */
  constructor(readonly namespaces: Set<bigint>, readonly owner = "") {}

  /** Stops watching a namespace: nothing more of it is delivered, and what was pending of it goes. */
  forget(namespaceId: bigint): void {
    this.namespaces.delete(namespaceId);
    this.pending.delete(namespaceId);
  }

  /** The highest cursor offered (or known to the client) per namespace: cursors never go back. */
  private readonly highest = new Map<bigint, bigint>();

  /** Records a cursor the client already has, so that older advances arriving late are dropped. */
  known(namespaceId: bigint, cursor: bigint): void {
    const h = this.highest.get(namespaceId);
    if (h === undefined || cursor > h) this.highest.set(namespaceId, cursor);
  }

  offer(namespaceId: bigint, cursor: bigint, publishedAt = 0, message?: M): void {
    // Concurrent commits publish in any order: an advance at or below what was offered is stale.
    const h = this.highest.get(namespaceId);
    if (h !== undefined && cursor <= h) {
      this.coalesced++;
      return;
    }
    this.highest.set(namespaceId, cursor);
    const prev = this.pending.get(namespaceId);
    if (prev === undefined) this.pending.set(namespaceId, { cursor, publishedAt, message });
    else {
      this.coalesced++;
      prev.cursor = cursor;
      prev.message = message;
    }
    this.wake?.();
  }

  /**
   * Takes everything pending, waiting until something arrives or nudge() is called (by the
   * stream's heartbeat timer, or when it ends). No timer or listener per call: a busy stream
   * takes thousands of times a second.
   */
  async take(): Promise<Map<bigint, Pending<M>>> {
    if (this.pending.size === 0 && !this.closed) {
      await new Promise<void>((resolve) => {
        this.wake = () => {
          this.wake = undefined;
          resolve();
        };
      });
    }
    const out = new Map(this.pending);
    this.pending.clear();
    return out;
  }

  private closed = false;

  /** Wakes a waiting take() with whatever is pending (possibly nothing). */
  nudge(): void {
    this.wake?.();
  }

  /** Ends the subscriber: a waiting take() returns, and later ones do not wait. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }
}

/**
 * Delivers namespace advances to the subscribers watching them. With a message factory, each
 * advance becomes one message shared by every subscriber (encoded once for all their streams).
 */
export class Fanout<M = unknown> {
  private readonly byNamespace = new Map<bigint, Set<Subscriber<M>>>();
  private readonly byOwner = new Map<string, Set<Subscriber<M>>>();
  private subscribers = 0;

  constructor(private readonly message?: (namespaceId: bigint, cursor: bigint) => M) {}

  add(sub: Subscriber<M>): void {
    this.subscribers++;
    let mine = this.byOwner.get(sub.owner);
    if (!mine) this.byOwner.set(sub.owner, (mine = new Set()));
    mine.add(sub);
    for (const ns of sub.namespaces) {
      let set = this.byNamespace.get(ns);
      if (!set) this.byNamespace.set(ns, (set = new Set()));
      set.add(sub);
    }
  }

  remove(sub: Subscriber<M>): void {
    this.subscribers--;
    const mine = this.byOwner.get(sub.owner);
    mine?.delete(sub);
    if (mine?.size === 0) this.byOwner.delete(sub.owner);
    for (const ns of sub.namespaces) {
      const set = this.byNamespace.get(ns);
      set?.delete(sub);
      if (set?.size === 0) this.byNamespace.delete(ns);
    }
  }

  /** The owners of the open subscribers (users, and "service"). */
  owners(): string[] {
    return [...this.byOwner.keys()];
  }

  /** The namespaces an owner's subscribers watch. */
  watchedBy(owner: string): Set<bigint> {
    const out = new Set<bigint>();
    for (const sub of this.byOwner.get(owner) ?? []) for (const ns of sub.namespaces) out.add(ns);
    return out;
  }

  /** An owner's membership of a namespace ended: their subscribers stop hearing of it. Returns how many did. */
  revoke(owner: string, namespaceId: bigint): number {
    let n = 0;
    for (const sub of this.byOwner.get(owner) ?? []) {
      if (!sub.namespaces.has(namespaceId)) continue;
      sub.forget(namespaceId);
      const set = this.byNamespace.get(namespaceId);
      set?.delete(sub);
      if (set?.size === 0) this.byNamespace.delete(namespaceId);
      n++;
    }
    return n;
  }

  /** Offers an advance to every subscriber of the namespace; returns how many there are. */
  publish(namespaceId: bigint, cursor: bigint, publishedAt = 0): number {
    const set = this.byNamespace.get(namespaceId);
    if (!set) return 0;
    const message = this.message?.(namespaceId, cursor);
    for (const sub of set) sub.offer(namespaceId, cursor, publishedAt, message);
    return set.size;
  }

  get subscriberCount(): number {
    return this.subscribers;
  }
}
