import { Code, ConnectError } from "@connectrpc/connect";
import type { CursorStates } from "./cursor-state.js";
import type { QuotaPolicy } from "./file-records.js";
import type { NamespaceStore } from "./namespaces.js";

/** How long a namespace's ownership and quota are cached on the commit path. */
const OWNERSHIP_CACHE_MS = 5000;

/**
 * Per-user quotas on logical bytes: the current files (not versions, not the trash) of every
 * namespace a user owns count against that user's quota.
 */
export class Quotas implements QuotaPolicy {
  private readonly cache = new Map<bigint, { at: number; owned: bigint[]; quotaBytes: bigint }>();
  constructor(
    private readonly namespaces: NamespaceStore,
    private readonly states: CursorStates,
    private readonly defaultQuotaBytes: bigint,
  ) {}

  private async ownership(ns: bigint) {
    const hit = this.cache.get(ns);
    if (hit && performance.now() - hit.at < OWNERSHIP_CACHE_MS) return hit;
    const o = await this.namespaces.ownership(ns);
    const entry = { at: performance.now(), owned: o.owned, quotaBytes: o.quotaBytes ?? this.defaultQuotaBytes };
    this.cache.set(ns, entry);
    return entry;
  }

  forget(): void {
    this.cache.clear();
  }

  /** Bytes a namespace holds; one whose creation never finished (no state) holds none. */
  private async usedIn(ns: bigint): Promise<bigint> {
    try {
      return (await this.states.of(ns)).usedBytes;
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound) return 0n;
      throw err;
    }
  }

  async headroom(ns: bigint): Promise<bigint | undefined> {
    const o = await this.ownership(ns);
    if (o.quotaBytes === 0n) return undefined;
    let elsewhere = 0n;
    for (const other of o.owned) if (other !== ns) elsewhere += await this.usedIn(other);
    return o.quotaBytes - elsewhere;
  }

  async usage(ns: bigint): Promise<{ usedBytes: bigint; quotaBytes: bigint }> {
    const o = await this.ownership(ns);
    let used = 0n;
    for (const id of o.owned) used += await this.usedIn(id);
    return { usedBytes: used, quotaBytes: o.quotaBytes };
  }
}
