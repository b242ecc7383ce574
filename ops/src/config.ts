import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { envInt, envString, generateTokenKey, type Env } from "@satchel/proto";

/** The pinned MinIO server, built from source by `go install` (MinIO's own documented install). */
export const MINIO_MODULE = "github.com/minio/minio";
export const MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * Everything the local cluster needs to know. Ports are laid out from one base so that a
 * developer's cluster and the test suite's cluster never collide:
 *   base+0..2  metaserver, blockserver, notifyserver (gRPC); base+3 share links (HTTP)
 *   base+10..12 their /metrics ports
 *   base+20..  MariaDB servers, base+30 Redis, base+40.. MinIO nodes
 */
export interface ClusterConfig {
  stateDir: string;
  host: string;
  portBase: number;
  mariadbServers: number;
  metadataShards: number;
  minioNodes: number;
  dataShards: number;
  parityShards: number;
  minioBinary: string;
  logLevel: string;
  /**
   * TLS on every hop, with a local CA and certificates the launcher makes under <state>/tls; off
   * only with SATCHEL_PLAINTEXT=on (local development).
   */
  tls: boolean;
  /** SATCHEL_RATE_LIMITS for every service of the cluster (JSON; see proto's rate-limits.ts), or the services' defaults. */
  rateLimits?: string;
}

/**
 * The sign-in limits of test and simulation clusters: their suites sign in and create accounts
 * from 127.0.0.1 hundreds of times a minute, far past what one client address is allowed. The
 * tests of those limits start a metaserver of their own with the defaults (the share-link gateway
 * keeps its default: its test floods from another address).
 */
export const BUSY_CLIENT_LIMITS = JSON.stringify({
  signin: { perSecond: 1000, burst: 5000 }, signup: { perSecond: 1000, burst: 5000 }, failedSignins: { perSecond: 1000, burst: 5000 },
});

/** Ports a cluster may use above its base: its own (see ports) and the test harnesses' extra services. */
export const PORT_SPAN = 140;

/**
 * Refuses a port base whose ports overlap the kernel's ephemeral range: an outgoing connection may
 * take one of them, and a process restarted on it then fails with EADDRINUSE (seen: a MariaDB
 * server restarted on 47320 could not bind again).
 */
export function checkPortBase(base: number, ephemeral: [number, number] | null = ephemeralPorts()): number {
  if (ephemeral && base + PORT_SPAN > ephemeral[0] && base <= ephemeral[1]) {
    throw new Error(`SATCHEL_PORT_BASE ${base} puts ports ${base}-${base + PORT_SPAN} in the ephemeral range ${ephemeral[0]}-${ephemeral[1]}, ` +
      `where outgoing connections take ports: choose a base below ${ephemeral[0] - PORT_SPAN}`);
  }
  return base;
}

function ephemeralPorts(): [number, number] | null {
  try {
    const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    return Number.isInteger(lo) && Number.isInteger(hi) ? [lo, hi] : null;
  } catch {
    return null; // not Linux: nothing to check against
  }
}

export function loadClusterConfig(env: Env = process.env): ClusterConfig {
  const cacheHome = envString(env, "XDG_CACHE_HOME", join(homedir(), ".cache"));
  return {
    stateDir: resolve(envString(env, "SATCHEL_STATE_DIR", join(REPO_ROOT, ".satchel", "dev"))),
    host: "127.0.0.1",
    portBase: checkPortBase(envInt(env, "SATCHEL_PORT_BASE", 7300)),
    mariadbServers: envInt(env, "SATCHEL_MARIADB_SERVERS", 2),
    metadataShards: envInt(env, "SATCHEL_METADATA_SHARDS", 4),
    minioNodes: envInt(env, "SATCHEL_MINIO_NODES", 6),
    dataShards: envInt(env, "SATCHEL_EC_DATA_SHARDS", 4),
    parityShards: envInt(env, "SATCHEL_EC_PARITY_SHARDS", 2),
    minioBinary: envString(env, "SATCHEL_MINIO_BIN", join(cacheHome, "satchel", "minio", MINIO_VERSION, "minio")),
    logLevel: envString(env, "SATCHEL_LOG_LEVEL", "info"),
    tls: plaintextSetting(env) === "off",
    rateLimits: env.SATCHEL_RATE_LIMITS || undefined,
  };
}

function plaintextSetting(env: Env): "on" | "off" {
  const value = envString(env, "SATCHEL_PLAINTEXT", "off");
  if (value !== "on" && value !== "off") throw new Error(`SATCHEL_PLAINTEXT must be "on" or "off", got "${value}"`);
  return value;
}

export const ports = (c: ClusterConfig) => ({
  metaserver: c.portBase,
  blockserver: c.portBase + 1,
  notifyserver: c.portBase + 2,
  shareLinks: c.portBase + 3,
  metaserverWeb: c.portBase + 4,
  blockserverWeb: c.portBase + 5,
  notifyserverWeb: c.portBase + 6,
  metaserverMetrics: c.portBase + 10,
  blockserverMetrics: c.portBase + 11,
  notifyserverMetrics: c.portBase + 12,
  mariadb: (i: number) => c.portBase + 20 + i,
  redis: c.portBase + 30,
  minio: (i: number) => c.portBase + 40 + i,
});

/** Credentials generated once per state directory and reused by every later start. */
export interface ClusterSecrets {
  mysqlPassword: string;
  /** The password of Redis's one user (see cluster/redis.ts). */
  redisPassword: string;
  /** The operator's credential (admin tools, tests): it may call every method of every service. */
  serviceToken: string;
  /** Each service's own credential, which it calls the others with (see proto's service-identity.ts). */
  serviceCredentials: Record<"metaserver" | "blockserver" | "notifyserver", string>;
  /** Access-token keys (Ed25519, with private halves), newest first (rotate by adding one in front). */
  accessKeys: { kid: string; x: string; d: string }[];
  /** Block-grant keys (HMAC), newest first. */
  grantKeys: { kid: string; secret: string }[];
  /** The development account created on every start. */
  devUser: { username: string; password: string };
  minio: { accessKey: string; secretKey: string }[];
}

export function loadOrCreateSecrets(c: ClusterConfig): ClusterSecrets {
  const file = join(c.stateDir, "secrets.json");
  const secret = () => randomBytes(18).toString("base64url");
  const fresh = (): ClusterSecrets => ({
    mysqlPassword: secret(),
    redisPassword: secret(),
    serviceToken: `svc-${secret()}`,
    serviceCredentials: { metaserver: `svc-meta-${secret()}`, blockserver: `svc-block-${secret()}`, notifyserver: `svc-notify-${secret()}` },
    accessKeys: [generateTokenKey(`k-${Date.now().toString(36)}`)],
    grantKeys: [{ kid: `g-${Date.now().toString(36)}`, secret: randomBytes(32).toString("base64url") }],
    devUser: { username: "dev", password: secret() },
    minio: Array.from({ length: c.minioNodes }, (_, i) => ({ accessKey: `satchel-node-${i}`, secretKey: secret() })),
  });
  let secrets = fresh();
  if (existsSync(file)) {
    // Keep what an existing state directory was made with; add only what is new.
    const stored = JSON.parse(readFileSync(file, "utf8")) as Partial<ClusterSecrets>;
    if ((stored.minio?.length ?? 0) >= c.minioNodes) secrets = { ...secrets, ...stored };
    // The HMAC access-token keys of earlier releases: tokens are Ed25519 now (accessKeys).
    delete (secrets as Partial<ClusterSecrets> & { tokenKeys?: unknown }).tokenKeys;
  }
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}
