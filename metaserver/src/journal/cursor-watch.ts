import { Redis } from "ioredis";
import { NAMESPACE_CHANNEL, redisTls, type Logger, type TlsConfig } from "@satchel/proto";
import type { JournalStore } from "../store/journal-store.js";
import { SHARD_MAP_CHANNEL, type CommitPublisher } from "./publisher.js";

/** How often a long poll re-reads MySQL while Redis (and so the push) is down. */
const POLL_WITHOUT_REDIS_MS = 1000;

/**
 * Latest cursors per namespace — from Redis, falling back to MySQL for what Redis does not know or
 * when it is down — and the long poll that waits for any of a set of namespaces to move on.
 */
export class CursorWatcher {
  private readonly subscriber: Redis;
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(
    url: string,
    private readonly publisher: CommitPublisher,
    private readonly journal: Pick<JournalStore, "cursorState">,
    private readonly logger: Logger,
    onShardMoved: (namespaceId: bigint) => void,
    tls: TlsConfig | undefined,
  ) {
    this.subscriber = new Redis(url, { ...redisTls(url, tls), lazyConnect: false, maxRetriesPerRequest: null });
    this.subscriber.on("error", (err) => this.logger.debug({ err: err.message }, "cursor watch: redis unavailable; long polls read MySQL"));
    this.subscriber.subscribe(NAMESPACE_CHANNEL, SHARD_MAP_CHANNEL).catch(() => undefined);
    this.subscriber.on("message", (channel: string, message: string) => {
      if (channel === SHARD_MAP_CHANNEL) {
        if (/^\d+$/.test(message)) onShardMoved(BigInt(message));
        return;
      }
      try {
        const { namespaceId } = JSON.parse(message) as { namespaceId: string };
        for (const wake of this.waiters.get(namespaceId) ?? []) wake();
      } catch {
        // A malformed hint is ignored: devices catch up from their cursors anyway.
      }
    });
  }

  get pushAvailable(): boolean {
    return this.subscriber.status === "ready";
  }

  async latest(namespaceIds: bigint[]): Promise<bigint[]> {
    const cached = await this.publisher.latest(namespaceIds);
    return Promise.all(namespaceIds.map(async (ns, i) => cached[i] ?? (await this.journal.cursorState(ns)).cursor));
  }

  /** Waits until any namespace is past its given cursor, the timeout passes, or the call is cancelled. */
  async wait(cursors: { namespaceId: bigint; cursor: bigint }[], timeoutMs: number, signal: AbortSignal): Promise<{ namespaceId: bigint; cursor: bigint }[]> {
    const deadline = performance.now() + timeoutMs;
    const ids = cursors.map((c) => c.namespaceId);
    for (;;) {
      let wake: () => void = () => undefined;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      for (const id of ids) {
        const key = id.toString();
        if (!this.waiters.has(key)) this.waiters.set(key, new Set());
        this.waiters.get(key)!.add(wake);
      }
      try {
        // Check after registering, so an advance between the check and the wait is not missed.
        // MySQL is the truth; Redis only says when to look.
        const latest = await Promise.all(ids.map(async (ns) => (await this.journal.cursorState(ns)).cursor));
        const changed = cursors.map((c, i) => ({ namespaceId: c.namespaceId, cursor: latest[i] })).filter((c, i) => c.cursor > cursors[i].cursor);
        const left = deadline - performance.now();
        if (changed.length > 0 || left <= 0 || signal.aborted) return changed;
        const nap = this.pushAvailable ? left : Math.min(left, POLL_WITHOUT_REDIS_MS);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          woken,
          new Promise<void>((resolve) => (timer = setTimeout(resolve, nap))),
          new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true })),
        ]);
        clearTimeout(timer);
      } finally {
        for (const id of ids) {
          const set = this.waiters.get(id.toString());
          set?.delete(wake);
          if (set?.size === 0) this.waiters.delete(id.toString());
        }
      }
    }
  }

  close(): void {
    this.subscriber.disconnect();
  }
}
