/**
 * A long local seed run's budget: no new seed starts after `minutes` (Infinity when unset) or once
 * SIGINT/SIGTERM arrived, so the run still ends with its summary and stops its own cluster.
 */
export function seedBudget(minutes: string | undefined): { goOn(): boolean } {
  const deadline = Date.now() + Number(minutes ?? Infinity) * 60_000;
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => (stopping = true));
  return { goOn: () => !stopping && Date.now() < deadline };
}
