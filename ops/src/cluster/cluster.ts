import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import mysql from "mysql2/promise";
import { createSatchelTransport, credentialDigests, mysqlTls, publicTokenKeys, referenceSourceOf } from "@satchel/proto";
import { Health, HealthCheckResponse_ServingStatus } from "@satchel/proto/gen/grpc/health/v1/health_pb.js";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { REPO_ROOT, loadOrCreateSecrets, ports, type ClusterConfig } from "../config.js";
import { MOVED_DIRECTORY_TABLES, MOVED_SHARD_TABLES, copyTables } from "./block-index-move.js";
import { ensureClusterCerts, type ClusterCerts } from "./certs.js";
import { startMariadb, provisionMariadb, type MariadbServer } from "./mariadb.js";
import { readMigrations, migrateUp } from "./migrate.js";
import { startMinioNode, type MinioNode } from "./minio.js";
import { ManagedProcess, WaitAbortedError, waitFor } from "./process.js";
import { REDIS_USER, startRedis } from "./redis.js";
import { trustClusterCa } from "./trust.js";

/** What a client, a test or an operator needs to reach a running cluster; written to <state>/cluster.json. */
export interface ClusterEndpoints {
  metaserver: string;
  blockserver: string;
  notifyserver: string;
  metrics: { metaserver: string; blockserver: string; notifyserver: string };
  /** Connect and gRPC-Web (HTTP/1.1, for browsers) of each service, from the same handlers as gRPC. */
  web: { metaserver: string; blockserver: string; notifyserver: string };
  /** Base URL of the share-link gateway. */
  shareLinks: string;
  /**
   * The CA file every hop's certificate chains to (services, MariaDB, Redis, MinIO); absent when
   * the cluster runs in plaintext (SATCHEL_PLAINTEXT=on).
   */
  ca?: string;
  /** The operator's credential (admin RPCs of every service); it cannot act on users' files. */
  serviceToken: string;
  /** Each service's own credential (what a second service process of this cluster needs); each may call only what its service needs. */
  serviceCredentials: Record<"metaserver" | "blockserver" | "notifyserver", string>;
  /** Access-token signing keys (what a second service process of this cluster needs). */
  /** Access-token keys with their private halves (the operator's copy: tests sign tokens with them; only the metaserver is given "d"). */
  tokenKeys: { kid: string; x: string; d: string }[];
  /** Block-grant keys (the metaserver's and the blockserver's). */
  grantKeys: { kid: string; secret: string }[];
  /** The development account: sign in with it (AuthService/Login) to act on files. */
  devUser: { username: string; password: string };
  /** The metaserver's directory database (its shard map, users, namespaces, mounts, links). */
  directoryUrl: string;
  /** The blockserver's own directory database (its index shards, storage nodes, reference sources). */
  blockIndexUrl: string;
  redisUrl: string;
  storageNodes: { name: string; endpoint: string; accessKey: string; secretKey: string; bucket: string }[];
  /** The services' SATCHEL_RATE_LIMITS, when the cluster was started with one (extra services get it too). */
  rateLimits?: string;
}

export interface Cluster {
  config: ClusterConfig;
  endpoints: ClusterEndpoints;
  mariadb: MariadbServer[];
  redis: ManagedProcess;
  minio: MinioNode[];
  services: Record<"metaserver" | "blockserver" | "notifyserver", ManagedProcess>;
  /** Milliseconds from start() to every service SERVING. */
  startMs: number;
  stop(): Promise<void>;
}

export const SERVICE_NAMES = ["blockserver", "metaserver", "notifyserver"] as const;

/** The databases of a cluster: the metaserver's directory and metadata shards, the blockserver's directory and index shards. */
export interface ClusterDatabases {
  directory: string;
  shard: (i: number) => string;
  blockDirectory: string;
  blockShard: (i: number) => string;
}

export const CLUSTER_DATABASES: ClusterDatabases = {
  directory: "satchel_directory",
  shard: (i) => `satchel_shard_${i}`,
  blockDirectory: "satchel_block_directory",
  blockShard: (i) => `satchel_blocks_${i}`,
};

export async function startCluster(config: ClusterConfig, log: (line: string) => void = () => undefined): Promise<Cluster> {
  const started = Date.now();
  mkdirSync(config.stateDir, { recursive: true });
  const secrets = loadOrCreateSecrets(config);
  const p = ports(config);
  const h = config.host;
  const certs = config.tls ? ensureClusterCerts(config.stateDir, h, certificateNames(config)) : undefined;
  const tlsOf = (name: string) => certs && { ...certs.server(name), ca: certs.ca };
  const caPem = certs && readFileSync(certs.ca);
  const stoppers: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stoppers.reverse()) await stop().catch(() => undefined);
    stoppers.length = 0;
  };
  try {
    log(`state directory ${config.stateDir}`);
    // Every process that did start gets a stopper, even when another one failed to start.
    const registered = <T>(work: Promise<T>, stop: (t: T) => Promise<void>) =>
      work.then((t) => {
        stoppers.push(() => stop(t));
        return t;
      });
    const starts = await Promise.allSettled([
      ...Array.from({ length: config.mariadbServers }, (_, i) => registered(startMariadb(config.stateDir, i, h, p.mariadb(i), tlsOf(`mariadb-${i}`)), (m) => m.process.stop(30_000))),
      registered(startRedis(config.stateDir, h, p.redis, secrets.redisPassword, tlsOf("redis")), (r) => r.stop()),
      ...Array.from({ length: config.minioNodes }, (_, i) =>
        registered(startMinioNode(config.stateDir, config.minioBinary, i, h, p.minio(i), secrets.minio[i], false, tlsOf(`minio-${i}`)), (n) => n.process.stop())),
    ]);
    const failed = starts.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const values = starts.map((r) => (r as PromiseFulfilledResult<unknown>).value);
    const mariadb = values.slice(0, config.mariadbServers) as MariadbServer[];
    const redis = values[config.mariadbServers] as ManagedProcess;
    const minio = values.slice(config.mariadbServers + 1) as MinioNode[];
    log(`started ${mariadb.length} MariaDB servers, Redis and ${minio.length} MinIO nodes`);

    // Metadata shard i and index shard i live on server i mod S; both directories on server 0.
    const names = CLUSTER_DATABASES;
    await Promise.all(mariadb.map((m) => {
      const mine = Array.from({ length: config.metadataShards }, (_, i) => i).filter((i) => i % mariadb.length === m.index);
      const dbs = mine.flatMap((i) => [names.shard(i), names.blockShard(i)]);
      return provisionMariadb(m, m.index === 0 ? [names.directory, names.blockDirectory, ...dbs] : dbs, secrets.mysqlPassword);
    }));
    await migrateAll({ host: h, ports: mariadb.map((m) => m.port), password: secrets.mysqlPassword, ca: caPem, shards: config.metadataShards, names }, log);

    const mysqlUrl = (database: string) => `mysql://satchel:${encodeURIComponent(secrets.mysqlPassword)}@${h}:${mariadb[0].port}/${database}`;
    const directoryUrl = mysqlUrl(names.directory);
    const blockIndexUrl = mysqlUrl(names.blockDirectory);
    const redisUrl = `${certs ? "rediss" : "redis"}://${REDIS_USER}:${encodeURIComponent(secrets.redisPassword)}@${h}:${p.redis}`;
    // Clients reach the services over TLS unless the cluster runs in plaintext; /metrics stays plain HTTP on loopback.
    const rpc = certs ? "https" : "http";
    const storageNodes = minio.map((n) => ({ name: n.name, endpoint: n.endpoint, accessKey: n.accessKey, secretKey: n.secretKey, bucket: n.bucket }));
    const endpoints: ClusterEndpoints = {
      metaserver: `${rpc}://${h}:${p.metaserver}`,
      blockserver: `${rpc}://${h}:${p.blockserver}`,
      notifyserver: `${rpc}://${h}:${p.notifyserver}`,
      metrics: {
        metaserver: `http://${h}:${p.metaserverMetrics}/metrics`,
        blockserver: `http://${h}:${p.blockserverMetrics}/metrics`,
        notifyserver: `http://${h}:${p.notifyserverMetrics}/metrics`,
      },
      web: {
        metaserver: `${rpc}://${h}:${p.metaserverWeb}`,
        blockserver: `${rpc}://${h}:${p.blockserverWeb}`,
        notifyserver: `${rpc}://${h}:${p.notifyserverWeb}`,
      },
      shareLinks: `${rpc}://${h}:${p.shareLinks}`,
      ...(certs ? { ca: certs.ca } : {}),
      serviceToken: secrets.serviceToken,
      serviceCredentials: secrets.serviceCredentials,
      tokenKeys: secrets.accessKeys,
      grantKeys: secrets.grantKeys,
      devUser: secrets.devUser,
      directoryUrl,
      blockIndexUrl,
      redisUrl,
      storageNodes,
      ...(config.rateLimits ? { rateLimits: config.rateLimits } : {}),
    };
    const common = {
      SATCHEL_HOST: h,
      SATCHEL_LOG_LEVEL: config.logLevel,
      // Public halves only: the metaserver alone is given the private keys (below).
      SATCHEL_TOKEN_KEYS: JSON.stringify(publicTokenKeys(endpoints.tokenKeys)),
      SATCHEL_REDIS_URL: redisUrl,
      ...(config.rateLimits ? { SATCHEL_RATE_LIMITS: config.rateLimits } : {}),
    };
    // SATCHEL_CPU_PROFILE_DIR: every service writes a V8 CPU profile there when it stops (where a
    // benchmark's time goes; Node refuses --cpu-prof in NODE_OPTIONS).
    const profileDir = process.env.SATCHEL_CPU_PROFILE_DIR;
    const profile = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, "--cpu-prof-interval=500"] : [];
    const service = (name: string, env: Record<string, string>) =>
      new ManagedProcess(name, config.stateDir, process.execPath, [...profile, join(REPO_ROOT, name, "dist", "bin.js")], {
        ...common, ...identityEnv(endpoints, name as ServiceName), ...tlsEnv(certs, name), ...env,
      });
    const services = {
      blockserver: service("blockserver", {
        SATCHEL_BLOCKSERVER_PORT: String(p.blockserver),
        SATCHEL_BLOCKSERVER_METRICS_PORT: String(p.blockserverMetrics),
        SATCHEL_BLOCKSERVER_WEB_PORT: String(p.blockserverWeb),
        SATCHEL_STORAGE_NODES: JSON.stringify(storageNodes),
        SATCHEL_BLOCK_INDEX_URL: blockIndexUrl,
        SATCHEL_GRANT_KEYS: JSON.stringify(endpoints.grantKeys),
        SATCHEL_EC_DATA_SHARDS: String(config.dataShards),
        SATCHEL_EC_PARITY_SHARDS: String(config.parityShards),
      }),
      metaserver: service("metaserver", {
        SATCHEL_METASERVER_PORT: String(p.metaserver),
        SATCHEL_METASERVER_METRICS_PORT: String(p.metaserverMetrics),
        SATCHEL_METASERVER_WEB_PORT: String(p.metaserverWeb),
        SATCHEL_BLOCKSERVER_URL: endpoints.blockserver,
        SATCHEL_DIRECTORY_URL: directoryUrl,
        SATCHEL_METASERVER_LINKS_PORT: String(p.shareLinks),
        SATCHEL_TOKEN_KEYS: JSON.stringify(endpoints.tokenKeys),
        SATCHEL_GRANT_KEYS: JSON.stringify(endpoints.grantKeys),
      }),
      notifyserver: service("notifyserver", {
        SATCHEL_NOTIFYSERVER_PORT: String(p.notifyserver),
        SATCHEL_NOTIFYSERVER_METRICS_PORT: String(p.notifyserverMetrics),
        SATCHEL_NOTIFYSERVER_WEB_PORT: String(p.notifyserverWeb),
        SATCHEL_METASERVER_URL: endpoints.metaserver,
      }),
    };
    for (const name of SERVICE_NAMES) {
      services[name].start();
      stoppers.push(() => services[name].stop());
    }
    await Promise.all(SERVICE_NAMES.map((name) => waitServing(name, endpoints[name], services[name], 60_000, caPem)));
    await ensureAccount(endpoints.metaserver, secrets.devUser, caPem);
    const cluster: Cluster = {
      config, endpoints, mariadb, redis, minio, services,
      startMs: Date.now() - started,
      stop: async () => {
        await stopAll();
        rmSync(join(config.stateDir, "cluster.json"), { force: true });
      },
    };
    writeFileSync(join(config.stateDir, "cluster.json"), JSON.stringify({ pid: process.pid, startMs: cluster.startMs, ...endpoints }, null, 2), { mode: 0o600 });
    return cluster;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** The certificates a cluster of this shape serves with: one per server process. */
function certificateNames(config: ClusterConfig): string[] {
  return [
    ...SERVICE_NAMES,
    ...Array.from({ length: config.mariadbServers }, (_, i) => `mariadb-${i}`),
    "redis",
    ...Array.from({ length: config.minioNodes }, (_, i) => `minio-${i}`),
  ];
}

export type ServiceName = (typeof SERVICE_NAMES)[number];

/**
 * A service process's identity: its own credential, which it calls the others with, and the
 * digests of every credential it accepts (each service's and the operator's), never another's
 * credential itself.
 */
export function identityEnv(e: ClusterEndpoints, service: ServiceName): Record<string, string> {
  return {
    SATCHEL_SERVICE_TOKEN: e.serviceCredentials[service],
    SATCHEL_SERVICE_CREDENTIALS: JSON.stringify(credentialDigests({ ...e.serviceCredentials, operator: e.serviceToken })),
  };
}

/** A service process's TLS settings: its own certificate and the cluster's CA, or the explicit plaintext setting. */
export function tlsEnv(certs: ClusterCerts | undefined, service: string): Record<string, string> {
  // Both ways are spelled out, so that settings inherited from the launcher's shell cannot mix in.
  if (!certs) return { SATCHEL_PLAINTEXT: "on", SATCHEL_TLS_CA: "", SATCHEL_TLS_CERT: "", SATCHEL_TLS_KEY: "" };
  const own = certs.server(service);
  return { SATCHEL_PLAINTEXT: "off", SATCHEL_TLS_CA: certs.ca, SATCHEL_TLS_CERT: own.cert, SATCHEL_TLS_KEY: own.key };
}

/** Where a cluster's databases are and how to reach them, for migrateAll. */
export interface MigrationTarget {
  host: string;
  /** The MariaDB servers' ports: shard i (metadata and index) lives on server i mod S, both directories on server 0. */
  ports: number[];
  password: string;
  ca?: Buffer;
  shards: number;
  names: ClusterDatabases;
}

/**
 * Brings every database of a cluster to the current schema, in an order that moves an existing
 * cluster's block index into the blockserver's own databases in place: the blockserver's
 * migrations first (its directory and index shards), then the rows of the old block tables (in the
 * metadata shards and the directory, where an older cluster has them) are copied over, and only
 * then the metaserver's migrations run, whose latest drop those old tables. Index shard i takes
 * exactly the rows of metadata shard i: the hash rule and the shard count are unchanged. Every
 * step is idempotent: a start interrupted anywhere completes on the next.
 */
export async function migrateAll(t: MigrationTarget, log: (l: string) => void): Promise<void> {
  const dir = join(REPO_ROOT, "ops", "migrations");
  const blockDir = join(REPO_ROOT, "blockserver", "migrations");
  const serverPort = (i: number) => t.ports[i % t.ports.length];
  const connect = (port: number, database?: string) =>
    mysql.createConnection({ host: t.host, port, user: "satchel", password: t.password, ...(database ? { database } : {}), ...mysqlTls(t.ca && { ca: t.ca }) });
  const migrate = async (port: number, database: string, folder: string, what: string) => {
    const conn = await connect(port, database);
    try {
      const applied = await migrateUp(conn, readMigrations(folder));
      if (applied.length) log(`${what}: applied migrations ${applied.join(", ")}`);
    } finally {
      await conn.end();
    }
  };
  const moveRows = async (port: number, from: string, to: string, tables: readonly string[]) => {
    const conn = await connect(port);
    try {
      const copied = await copyTables(conn, from, to, tables);
      const rows = Object.values(copied).reduce((a, b) => a + b, 0);
      if (rows > 0) log(`moved ${rows} rows of the block index from ${from} to ${to}`);
    } finally {
      await conn.end();
    }
  };
  await migrate(t.ports[0], t.names.blockDirectory, join(blockDir, "index-directory"), "block index directory");
  for (let i = 0; i < t.shards; i++) await migrate(serverPort(i), t.names.blockShard(i), join(blockDir, "index-shard"), `index shard ${i}`);
  await moveRows(t.ports[0], t.names.directory, t.names.blockDirectory, MOVED_DIRECTORY_TABLES);
  for (let i = 0; i < t.shards; i++) await moveRows(serverPort(i), t.names.shard(i), t.names.blockShard(i), MOVED_SHARD_TABLES);

  await migrate(t.ports[0], t.names.directory, join(dir, "directory"), "directory");
  for (let i = 0; i < t.shards; i++) await migrate(serverPort(i), t.names.shard(i), join(dir, "shard"), `shard ${i}`);

  const directory = await connect(t.ports[0], t.names.directory);
  const blockDirectory = await connect(t.ports[0], t.names.blockDirectory);
  try {
    for (let i = 0; i < t.shards; i++) {
      const upsert = (table: string, database: string) => `INSERT INTO ${table} (shard_id, host, port, database_name) VALUES (?, ?, ?, ?)
        ON DUPLICATE KEY UPDATE host = VALUES(host), port = VALUES(port), database_name = VALUES(database_name)`;
      await directory.query(upsert("shards", t.names.shard(i)), [i, t.host, serverPort(i), t.names.shard(i)]);
      await blockDirectory.query(upsert("index_shards", t.names.blockShard(i)), [i, t.host, serverPort(i), t.names.blockShard(i)]);
      // Collection waits for every metadata shard's relay: registered before any commit can reach it.
      await blockDirectory.query(
        "INSERT INTO reference_sources (source, expected) VALUES (?, TRUE) ON DUPLICATE KEY UPDATE expected = TRUE", [referenceSourceOf(i)],
      );
    }
  } finally {
    await directory.end();
    await blockDirectory.end();
  }
}

/**
 * The endpoints a running cluster wrote to <state>/cluster.json, for tools and benchmarks that
 * attach to it; this process then trusts the cluster's CA by default (see trustClusterCa).
 */
export function readClusterFile(stateDir: string): ClusterEndpoints & { pid: number; startMs: number } {
  const file = join(stateDir, "cluster.json");
  if (!existsSync(file)) throw new Error(`no cluster is running from ${stateDir} (no ${file}): start one with "bash ops/up.sh"`);
  const endpoints = JSON.parse(readFileSync(file, "utf8")) as ClusterEndpoints & { pid: number; startMs: number };
  trustClusterCa(endpoints);
  return endpoints;
}

/** Creates an account unless it exists (the development account, on every start). */
export async function ensureAccount(metaserver: string, user: { username: string; password: string }, ca?: Buffer): Promise<void> {
  const auth = createClient(AuthService, createSatchelTransport({ baseUrl: metaserver, ca }));
  try {
    await auth.createAccount(user);
  } catch (err) {
    if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
  }
}

/** Waits until the service's grpc.health.v1 reports SERVING. */
export async function waitServing(name: string, baseUrl: string, proc?: ManagedProcess, timeoutMs = 60_000, ca?: Buffer): Promise<void> {
  const health = createClient(Health, createSatchelTransport({ baseUrl, ca }));
  await waitFor(`${name} to report SERVING at ${baseUrl}`, timeoutMs, async () => {
    if (proc && !proc.running) throw new WaitAbortedError(`${name} exited:\n${proc.tail()}`);
    const res = await health.check({ service: "" }, { timeoutMs: 1000 });
    return res.status === HealthCheckResponse_ServingStatus.SERVING;
  }, () => proc?.tail() ?? "");
}
