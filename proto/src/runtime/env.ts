import { rateLimitsFrom, type RateLimitConfig } from "./rate-limits.js";
import type { SigningKey } from "./tokens.js";
import { tlsFromEnv, type TlsConfig } from "./tls.js";

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

/** The settings every Satchel service process has. */
export interface ServiceBasics {
  host: string;
  port: number;
  /** Connect and gRPC-Web (for browsers), when SATCHEL_<SERVICE>_WEB_PORT is set. */
  webPort?: number;
  metricsPort: number;
  logLevel: string;
  /** The RPC metrics interceptor (on unless SATCHEL_RPC_METRICS=off; off only to measure its cost). */
  rpcMetrics: boolean;
  /** The token Satchel services and operators call each other with. */
  serviceToken: string;
  /** Access token keys; the first signs, all verify (rotation). Block grant keys derive from them. */
  tokenKeys: SigningKey[];
  /** How long a block grant stays valid: how long read access outlives a revoked share. */
  blockGrantSeconds: number;
  /** Per-user rate limits (SATCHEL_RATE_LIMITS). */
  rateLimits: RateLimitConfig;
  /** What the service serves with and trusts (see tls.ts); undefined only with SATCHEL_PLAINTEXT=on. */
  tls: TlsConfig | undefined;
}

/**
 * Reads SATCHEL_HOST, SATCHEL_<SERVICE>_PORT (gRPC), SATCHEL_<SERVICE>_WEB_PORT (Connect and
 * gRPC-Web; not served when unset), SATCHEL_<SERVICE>_METRICS_PORT (default: port + 10),
 * SATCHEL_LOG_LEVEL, SATCHEL_SERVICE_TOKEN (required) and SATCHEL_TOKEN_KEYS (required; JSON
 * [{"kid": "...", "secret": "<base64url, 32+ bytes>"}], newest first) and
 * SATCHEL_BLOCK_GRANT_SECONDS (default 300), SATCHEL_RATE_LIMITS (see rate-limits.ts), and
 * SATCHEL_TLS_CA, SATCHEL_TLS_CERT, SATCHEL_TLS_KEY or SATCHEL_PLAINTEXT=on (see tls.ts).
 */
export function serviceBasics(env: Env, service: string, defaultPort: number): ServiceBasics {
  const prefix = `SATCHEL_${service.toUpperCase()}`;
  const port = envInt(env, `${prefix}_PORT`, defaultPort);
  const basics: ServiceBasics = {
    host: envString(env, "SATCHEL_HOST", "127.0.0.1"),
    port,
    webPort: env[`${prefix}_WEB_PORT`] ? envInt(env, `${prefix}_WEB_PORT`, 0) : undefined,
    metricsPort: envInt(env, `${prefix}_METRICS_PORT`, port + 10),
    logLevel: envString(env, "SATCHEL_LOG_LEVEL", "info"),
    rpcMetrics: envString(env, "SATCHEL_RPC_METRICS", "on") !== "off",
    serviceToken: envString(env, "SATCHEL_SERVICE_TOKEN", ""),
    tokenKeys: envJson<SigningKey[]>(env, "SATCHEL_TOKEN_KEYS", []),
    blockGrantSeconds: envInt(env, "SATCHEL_BLOCK_GRANT_SECONDS", 300),
    rateLimits: rateLimitsFrom(env.SATCHEL_RATE_LIMITS),
    tls: tlsFromEnv(env, true),
  };
  if (!basics.serviceToken) throw new Error("SATCHEL_SERVICE_TOKEN is required");
  if (basics.tokenKeys.length === 0) throw new Error("SATCHEL_TOKEN_KEYS is required (access token signing keys)");
  return basics;
}
