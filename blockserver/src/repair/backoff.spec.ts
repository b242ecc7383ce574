import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { REPAIR_RETRY_FIRST_MS, REPAIR_RETRY_MAX_MS, repairRetryDelayMs } from "./backoff.js";

describe("repair retry back-off", () => {
  it("doubles from one second and never waits more than a minute", () => {
    expect(repairRetryDelayMs(0)).toBe(REPAIR_RETRY_FIRST_MS);
    expect(repairRetryDelayMs(1)).toBe(2 * REPAIR_RETRY_FIRST_MS);
    expect(repairRetryDelayMs(100)).toBe(REPAIR_RETRY_MAX_MS);
    fc.assert(fc.property(fc.nat(1_000_000), (n) => {
      const d = repairRetryDelayMs(n);
      expect(d).toBeGreaterThanOrEqual(REPAIR_RETRY_FIRST_MS);
      expect(d).toBeLessThanOrEqual(REPAIR_RETRY_MAX_MS);
      expect(repairRetryDelayMs(n + 1)).toBeGreaterThanOrEqual(d);
    }));
  });
});
