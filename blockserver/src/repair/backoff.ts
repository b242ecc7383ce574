/** First retry of a repair that could not finish (a node still down), and the longest wait. */
export const REPAIR_RETRY_FIRST_MS = 1000;
export const REPAIR_RETRY_MAX_MS = 60_000;

/**
 * How long a repair waits after `attempts` failed tries: doubling from one second, capped at a
 * minute. A node coming back makes its blocks due at once, so the cap bounds only the wait for
 * nodes whose return goes unnoticed.
 */
export function repairRetryDelayMs(attempts: number): number {
  return Math.min(REPAIR_RETRY_MAX_MS, REPAIR_RETRY_FIRST_MS * 2 ** Math.min(Math.max(attempts, 0), 16));
}
