import { describe, expect, it } from "vitest";
import type { ReferenceSourceState } from "../block-index/block-index.js";
import { collectionWindow } from "./collection-window.js";

const source = (name: string, over: Partial<ReferenceSourceState> = {}): ReferenceSourceState => ({
  source: name, deliveredThroughMs: 1_000_000, oldestPendingSeconds: 0, silentSeconds: 1, ...over,
});

describe("collection never outruns the reference relays", () => {
  it("takes only blocks that reached zero before the slowest source's claim, less the clock skew", () => {
    const w = collectionWindow([source("a", { deliveredThroughMs: 5_000 }), source("b", { deliveredThroughMs: 3_000 })], 60, 250);
    expect(w).toEqual({ settledMs: 2_750 });
  });

  it("pauses while a source has never reported", () => {
    const w = collectionWindow([source("a"), source("b", { deliveredThroughMs: 0, silentSeconds: Infinity })], 60, 0);
    expect(w.paused).toMatch(/b has never reported/);
    expect(w.settledMs).toBe(0);
  });

  it("pauses while a source is silent longer than the bound", () => {
    expect(collectionWindow([source("a", { silentSeconds: 61 })], 60, 0).paused).toMatch(/a has not reported .* for 61 s \(bound 60 s\)/);
    expect(collectionWindow([source("a", { silentSeconds: 59 })], 60, 0).paused).toBeUndefined();
  });

  it("pauses while a source's outbox holds changes older than the bound", () => {
    expect(collectionWindow([source("a", { oldestPendingSeconds: 300 })], 60, 0).paused).toMatch(/a holds reference changes 300 s old/);
  });

  it("pauses when no source is known at all", () => {
    expect(collectionWindow([], 60, 0).paused).toMatch(/no source/);
  });
});
