import { rateLimitsFrom, type RateLimitConfig } from "./rate-limits.js";
import type { SigningKey, TokenKey } from "./tokens.js";
import { checkServiceCredentials, credentialDigest, type ServiceCredentials, type ServiceIdentity } from "./service-identity.js";
import { secureUrl, tlsFromEnv, type TlsConfig } from "./tls.js";

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
  /** This service's own credential, which it calls the other services with (SATCHEL_SERVICE_TOKEN). */
  serviceToken: string;
  /** The digests of the credentials it accepts, by whom each names (SATCHEL_SERVICE_CREDENTIALS; see service-identity.ts). */
  serviceCredentials: ServiceCredentials;
  /** Access-token keys (Ed25519): public halves everywhere, private halves only in the metaserver (see tokens.ts). */
  tokenKeys: TokenKey[];
  /** Block-grant keys (HMAC; SATCHEL_GRANT_KEYS): the metaserver and the blockserver only; the first signs. */
  grantKeys: SigningKey[];
  /** How long a block grant stays valid: how long read access outlives a revoked share. */
  blockGrantSeconds: number;
  /** Rate limits (SATCHEL_RATE_LIMITS), per user and per client address, shared through Redis. */
  rateLimits: RateLimitConfig;
  /** Redis (SATCHEL_REDIS_URL): the journal's notifications and the shared rate limits. */
  redisUrl: string;
  /** What the service serves with and trusts (see tls.ts); undefined only with SATCHEL_PLAINTEXT=on. */
  tls: TlsConfig | undefined;
}

/**
 * Reads SATCHEL_HOST, SATCHEL_<SERVICE>_PORT (gRPC), SATCHEL_<SERVICE>_WEB_PORT (Connect and
 * gRPC-Web; not served when unset), SATCHEL_<SERVICE>_METRICS_PORT (default: port + 10),
 * SATCHEL_LOG_LEVEL, SATCHEL_SERVICE_TOKEN (required: this service's own credential),
 * SATCHEL_SERVICE_CREDENTIALS (required; JSON {"metaserver": "<sha256 hex>", "blockserver": …,
 * "notifyserver": …, "operator": …}: the digests of the credentials it accepts, its own among them),
 * SATCHEL_TOKEN_KEYS (required; JSON
 * [{"kid": "...", "x": "<Ed25519 public key, base64url>"}], newest first, with "d" — the private
 * key — in the metaserver's only), SATCHEL_GRANT_KEYS (the metaserver's and the blockserver's; JSON
 * [{"kid": "...", "secret": "<base64url, 32+ bytes>"}], newest first),
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
    serviceCredentials: checkServiceCredentials(envJson<unknown>(env, "SATCHEL_SERVICE_CREDENTIALS", {})),
    tokenKeys: envJson<TokenKey[]>(env, "SATCHEL_TOKEN_KEYS", []),
    grantKeys: envJson<SigningKey[]>(env, "SATCHEL_GRANT_KEYS", []),
    blockGrantSeconds: envInt(env, "SATCHEL_BLOCK_GRANT_SECONDS", 300),
    rateLimits: rateLimitsFrom(env.SATCHEL_RATE_LIMITS),
    tls: tlsFromEnv(env, true),
    redisUrl: "",
  };
  basics.redisUrl = secureUrl("SATCHEL_REDIS_URL", envString(env, "SATCHEL_REDIS_URL", `${basics.tls ? "rediss" : "redis"}://127.0.0.1:7330`), basics.tls);
  if (!basics.serviceToken) throw new Error("SATCHEL_SERVICE_TOKEN is required (this service's own credential)");
  const own = basics.serviceCredentials[service as ServiceIdentity];
  if (own === undefined) throw new Error(`SATCHEL_SERVICE_CREDENTIALS has no "${service}": list the digest of every credential this service accepts, its own among them`);
  if (own !== credentialDigest(basics.serviceToken)) {
    throw new Error(`SATCHEL_SERVICE_TOKEN is not the ${service}'s credential (its digest is not SATCHEL_SERVICE_CREDENTIALS["${service}"]): each service calls with its own`);
  }
  if (basics.tokenKeys.length === 0) throw new Error("SATCHEL_TOKEN_KEYS is required (access-token keys: [{\"kid\", \"x\"}], Ed25519 public keys)");
  // Only the metaserver mints users' tokens: any other service holding a private key could too.
  if (service !== "metaserver" && basics.tokenKeys.some((k) => k.d)) {
    throw new Error(`SATCHEL_TOKEN_KEYS holds a private key ("d"): only the metaserver may; give the ${service} the public keys ({"kid", "x"}) only`);
  }
  return basics;
}
