/**
 * In-process fan-out of namespace advances to subscribers. Each subscriber keeps only the latest
 * cursor per namespace, so a slow consumer costs one map entry per namespace and never blocks
 * delivery to the others.
 */
export class Subscriber {
  private readonly pending = new Map<bigint, bigint>();
  private wake?: () => void;

  constructor(readonly namespaces: ReadonlySet<bigint>) {}

  offer(namespaceId: bigint, cursor: bigint): void {
    const prev = this.pending.get(namespaceId);
    if (prev === undefined || cursor > prev) this.pending.set(namespaceId, cursor);
    this.wake?.();
  }

  /** Takes everything pending, waiting up to timeoutMs (or until aborted) for something to arrive. */
  async take(timeoutMs: number, signal: AbortSignal): Promise<Map<bigint, bigint>> {
    if (this.pending.size === 0 && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener("abort", done);
        this.wake = done;
      });
    }
    const out = new Map(this.pending);
    this.pending.clear();
    return out;
  }
}

export class Fanout {
  private readonly byNamespace = new Map<bigint, Set<Subscriber>>();

  add(sub: Subscriber): void {
    for (const ns of sub.namespaces) {
      let set = this.byNamespace.get(ns);
      if (!set) this.byNamespace.set(ns, (set = new Set()));
      set.add(sub);
    }
  }

  remove(sub: Subscriber): void {
    for (const ns of sub.namespaces) {
      const set = this.byNamespace.get(ns);
      set?.delete(sub);
      if (set?.size === 0) this.byNamespace.delete(ns);
    }
  }

  publish(namespaceId: bigint, cursor: bigint): number {
    const set = this.byNamespace.get(namespaceId);
    if (!set) return 0;
    for (const sub of set) sub.offer(namespaceId, cursor);
    return set.size;
  }

  get subscriberCount(): number {
    const all = new Set<Subscriber>();
    for (const set of this.byNamespace.values()) for (const s of set) all.add(s);
    return all.size;
  }
}
