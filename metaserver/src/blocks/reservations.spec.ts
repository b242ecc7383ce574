import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RecentReservations } from "./reservations.js";

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("RecentReservations", () => {
  it("covers a block only within the reuse time, counted from when the blockserver was asked", () => {
    const c = clock();
    const recent = new RecentReservations(30_000, 10, c.now);
    const askedAt = c.now();
    c.advance(500); // the answer took half a second
    recent.record(["aa"], askedAt, 1800);
    expect(recent.covers("aa")).toBe(true);
    expect(recent.covers("bb")).toBe(false);
    c.advance(29_499);
    expect(recent.covers("aa")).toBe(true);
    c.advance(1);
    expect(recent.covers("aa")).toBe(false);
    expect(recent.size).toBe(0);
  });

  it("reuses a reservation for at most a quarter of the time the blockserver promised it holds", () => {
    const c = clock();
    // A short lease (4 s: the blockserver promises 2 s) leaves half a second of reuse.
    const recent = new RecentReservations(30_000, 10, c.now);
    recent.record(["aa"], c.now(), 2);
    c.advance(499);
    expect(recent.covers("aa")).toBe(true);
    c.advance(1);
    expect(recent.covers("aa")).toBe(false);
  });

  it("remembers nothing when the blockserver promises nothing or reuse is off", () => {
    const c = clock();
    const old = new RecentReservations(30_000, 10, c.now);
    old.record(["aa"], c.now(), 0);
    expect(old.covers("aa")).toBe(false);
    const off = new RecentReservations(0, 10, c.now);
    off.record(["aa"], c.now(), 1800);
    expect(off.covers("aa")).toBe(false);
  });

  it("keeps at most maxEntries, forgetting the least recently reserved first", () => {
    const c = clock();
    const recent = new RecentReservations(30_000, 2, c.now);
    recent.record(["a"], c.now(), 1800);
    recent.record(["b"], c.now(), 1800);
    recent.record(["a"], c.now(), 1800); // reserved again: now the newest
    recent.record(["c"], c.now(), 1800);
    expect([recent.covers("a"), recent.covers("b"), recent.covers("c")]).toEqual([true, false, true]);
  });

  it("never covers a block past its promise, whatever the order of reservations and checks", () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant("record" as const), hex: fc.constantFrom("a", "b", "c"), lag: fc.nat(2000), promised: fc.nat(100) }),
      fc.record({ kind: fc.constant("check" as const), hex: fc.constantFrom("a", "b", "c") }),
      fc.record({ kind: fc.constant("wait" as const), ms: fc.nat(40_000) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), fc.integer({ min: 0, max: 60_000 }), (steps, reuseMs) => {
        const c = clock();
        const recent = new RecentReservations(reuseMs, 2, c.now);
        // The latest time each block is certainly still reserved, per the blockserver's promises.
        const heldUntil = new Map<string, number>();
        for (const s of steps) {
          if (s.kind === "wait") c.advance(s.ms);
          else if (s.kind === "record") {
            const askedAt = c.now() - s.lag;
            recent.record([s.hex], askedAt, s.promised);
            heldUntil.set(s.hex, Math.max(heldUntil.get(s.hex) ?? 0, askedAt + s.promised * 1000));
          } else if (recent.covers(s.hex)) {
            // Covered: the reservation still holds, with three quarters of its promise to spare.
            expect(c.now()).toBeLessThan(heldUntil.get(s.hex) ?? 0);
          }
        }
      }),
    );
  });
});
