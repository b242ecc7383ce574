import type { ReferenceSourceState } from "../block-index/block-index.js";

/** What collection may take now, given what every source of reference changes last reported. */
export interface CollectionWindow {
  /** Why no new block may be collected (a source silent, never heard from, or behind); absent: collect. */
  paused?: string;
  /**
   * Blocks that reached zero (or were last reserved) before this time, in Unix ms, may go: every
   * source had delivered all it committed until then. Lowered by the clock skew allowed between
   * the blockserver that stamped the claims and the index databases that stamp the blocks.
   */
  settledMs: number;
}

/**
 * Garbage collection never outruns the relays: a block at zero may still be referenced by a commit
 * whose change waits in some shard's outbox. Each source claims a time before which it delivered
 * everything; a block is collectable only when it reached zero before the oldest claim. And while a
 * source is silent, unknown or holds changes older than `boundSeconds`, collection pauses outright:
 * the relay is in trouble and the reservation lease may no longer cover what it holds.
 */
export function collectionWindow(sources: ReferenceSourceState[], boundSeconds: number, clockSkewMs: number): CollectionWindow {
  const settledMs = sources.length ? Math.min(...sources.map((s) => s.deliveredThroughMs)) - clockSkewMs : 0;
  for (const s of sources) {
    if (!Number.isFinite(s.silentSeconds)) return { paused: `${s.source} has never reported its reference changes`, settledMs };
    if (s.silentSeconds > boundSeconds) return { paused: `${s.source} has not reported its reference changes for ${Math.round(s.silentSeconds)} s (bound ${boundSeconds} s)`, settledMs };
    if (s.oldestPendingSeconds > boundSeconds) return { paused: `${s.source} holds reference changes ${Math.round(s.oldestPendingSeconds)} s old (bound ${boundSeconds} s)`, settledMs };
  }
  if (sources.length === 0) return { paused: "no source of reference changes is known (empty shard map)", settledMs };
  return { settledMs };
}
