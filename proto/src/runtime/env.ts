/**
 * Typed readers for environment variables. Only the services' config.ts files call these, so that
 * every setting has one typed home and a default that works for the local cluster.
 */
export type Env = Record<string, string | undefined>;

export function envString(env: Env, name: string, fallback: string): string {
  const value = env[name];
  return value === undefined || value === "" ? fallback : value;
}

export function envInt(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value)) {
    throw new Error(`${name} must be an integer, got "${raw}"`);
  }
  return value;
}

export function envList(env: Env, name: string, fallback: string[]): string[] {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  return raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Parses a JSON-valued setting (used for lists of endpoints with credentials). */
export function envJson<T>(env: Env, name: string, fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  try {
    return JSON.parse(raw) as T;
  } catch (err) {
    throw new Error(`${name} must be JSON: ${(err as Error).message}`);
  }
}
