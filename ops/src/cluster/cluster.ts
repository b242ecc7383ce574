import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import mysql from "mysql2/promise";
import { createSatchelTransport } from "@satchel/proto";
import { Health, HealthCheckResponse_ServingStatus } from "@satchel/proto/gen/grpc/health/v1/health_pb.js";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { REPO_ROOT, loadOrCreateSecrets, ports, type ClusterConfig } from "../config.js";
import { startMariadb, provisionMariadb, type MariadbServer } from "./mariadb.js";
import { readMigrations, migrateUp } from "./migrate.js";
import { startMinioNode, type MinioNode } from "./minio.js";
import { ManagedProcess, WaitAbortedError, waitFor } from "./process.js";
import { startRedis } from "./redis.js";

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
  /** For services and operators (admin RPCs); it cannot act on users' files. */
  serviceToken: string;
  /** Access-token signing keys (what a second service process of this cluster needs). */
  tokenKeys: { kid: string; secret: string }[];
  /** The development account: sign in with it (AuthService/Login) to act on files. */
  devUser: { username: string; password: string };
  directoryUrl: string;
  redisUrl: string;
  storageNodes: { name: string; endpoint: string; accessKey: string; secretKey: string; bucket: string }[];
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

const shardDatabase = (i: number) => `satchel_shard_${i}`;
const DIRECTORY_DATABASE = "satchel_directory";

export async function startCluster(config: ClusterConfig, log: (line: string) => void = () => undefined): Promise<Cluster> {
  const started = Date.now();
  mkdirSync(config.stateDir, { recursive: true });
  const secrets = loadOrCreateSecrets(config);
  const p = ports(config);
  const h = config.host;
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
      ...Array.from({ length: config.mariadbServers }, (_, i) => registered(startMariadb(config.stateDir, i, h, p.mariadb(i)), (m) => m.process.stop(30_000))),
      registered(startRedis(config.stateDir, h, p.redis), (r) => r.stop()),
      ...Array.from({ length: config.minioNodes }, (_, i) =>
        registered(startMinioNode(config.stateDir, config.minioBinary, i, h, p.minio(i), secrets.minio[i]), (n) => n.process.stop())),
    ]);
    const failed = starts.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const values = starts.map((r) => (r as PromiseFulfilledResult<unknown>).value);
    const mariadb = values.slice(0, config.mariadbServers) as MariadbServer[];
    const redis = values[config.mariadbServers] as ManagedProcess;
    const minio = values.slice(config.mariadbServers + 1) as MinioNode[];
    log(`started ${mariadb.length} MariaDB servers, Redis and ${minio.length} MinIO nodes`);

    // Shard i lives on server i mod S; the directory lives on server 0.
    const serverOfShard = (i: number) => mariadb[i % mariadb.length];
    await Promise.all(mariadb.map((m) => {
      const dbs = Array.from({ length: config.metadataShards }, (_, i) => i).filter((i) => serverOfShard(i) === m).map(shardDatabase);
      return provisionMariadb(m, m.index === 0 ? [DIRECTORY_DATABASE, ...dbs] : dbs, secrets.mysqlPassword);
    }));
    await migrateAll(config, mariadb, serverOfShard, secrets.mysqlPassword, log);

    const directoryUrl = `mysql://satchel:${encodeURIComponent(secrets.mysqlPassword)}@${h}:${mariadb[0].port}/${DIRECTORY_DATABASE}`;
    const redisUrl = `redis://${h}:${p.redis}`;
    const storageNodes = minio.map((n) => ({ name: n.name, endpoint: n.endpoint, accessKey: n.accessKey, secretKey: n.secretKey, bucket: n.bucket }));
    const endpoints: ClusterEndpoints = {
      metaserver: `http://${h}:${p.metaserver}`,
      blockserver: `http://${h}:${p.blockserver}`,
      notifyserver: `http://${h}:${p.notifyserver}`,
      metrics: {
        metaserver: `http://${h}:${p.metaserverMetrics}/metrics`,
        blockserver: `http://${h}:${p.blockserverMetrics}/metrics`,
        notifyserver: `http://${h}:${p.notifyserverMetrics}/metrics`,
      },
      web: {
        metaserver: `http://${h}:${p.metaserverWeb}`,
        blockserver: `http://${h}:${p.blockserverWeb}`,
        notifyserver: `http://${h}:${p.notifyserverWeb}`,
      },
      shareLinks: `http://${h}:${p.shareLinks}`,
      serviceToken: secrets.serviceToken,
      tokenKeys: secrets.tokenKeys,
      devUser: secrets.devUser,
      directoryUrl,
      redisUrl,
      storageNodes,
    };
    const common = {
      SATCHEL_HOST: h,
      SATCHEL_LOG_LEVEL: config.logLevel,
      SATCHEL_SERVICE_TOKEN: secrets.serviceToken,
      SATCHEL_TOKEN_KEYS: JSON.stringify(endpoints.tokenKeys),
      SATCHEL_DIRECTORY_URL: directoryUrl,
      SATCHEL_REDIS_URL: redisUrl,
    };
    const service = (name: string, env: Record<string, string>) =>
      new ManagedProcess(name, config.stateDir, process.execPath, [join(REPO_ROOT, name, "dist", "bin.js")], { ...common, ...env });
    const services = {
      blockserver: service("blockserver", {
        SATCHEL_BLOCKSERVER_PORT: String(p.blockserver),
        SATCHEL_BLOCKSERVER_METRICS_PORT: String(p.blockserverMetrics),
        SATCHEL_BLOCKSERVER_WEB_PORT: String(p.blockserverWeb),
        SATCHEL_STORAGE_NODES: JSON.stringify(storageNodes),
        SATCHEL_EC_DATA_SHARDS: String(config.dataShards),
        SATCHEL_EC_PARITY_SHARDS: String(config.parityShards),
      }),
      metaserver: service("metaserver", {
        SATCHEL_METASERVER_PORT: String(p.metaserver),
        SATCHEL_METASERVER_METRICS_PORT: String(p.metaserverMetrics),
        SATCHEL_METASERVER_WEB_PORT: String(p.metaserverWeb),
        SATCHEL_BLOCKSERVER_URL: endpoints.blockserver,
        SATCHEL_METASERVER_LINKS_PORT: String(p.shareLinks),
      }),
      notifyserver: service("notifyserver", {
        SATCHEL_NOTIFYSERVER_PORT: String(p.notifyserver),
        SATCHEL_NOTIFYSERVER_METRICS_PORT: String(p.notifyserverMetrics),
        SATCHEL_NOTIFYSERVER_WEB_PORT: String(p.notifyserverWeb),
      }),
    };
    for (const name of SERVICE_NAMES) {
      services[name].start();
      stoppers.push(() => services[name].stop());
    }
    await Promise.all(SERVICE_NAMES.map((name) => waitServing(name, endpoints[name], services[name])));
    await ensureAccount(endpoints.metaserver, secrets.devUser);
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

async function migrateAll(
  config: ClusterConfig, mariadb: MariadbServer[], serverOfShard: (i: number) => MariadbServer, password: string, log: (l: string) => void,
): Promise<void> {
  const dir = join(REPO_ROOT, "ops", "migrations");
  const connect = (m: MariadbServer, database: string) =>
    mysql.createConnection({ host: config.host, port: m.port, user: "satchel", password, database });
  const directory = await connect(mariadb[0], DIRECTORY_DATABASE);
  try {
    const applied = await migrateUp(directory, readMigrations(join(dir, "directory")));
    if (applied.length) log(`directory: applied migrations ${applied.join(", ")}`);
    for (let i = 0; i < config.metadataShards; i++) {
      const server = serverOfShard(i);
      const shard = await connect(server, shardDatabase(i));
      try {
        const done = await migrateUp(shard, readMigrations(join(dir, "shard")));
        if (done.length) log(`shard ${i}: applied migrations ${done.join(", ")}`);
      } finally {
        await shard.end();
      }
      await directory.query(
        "INSERT INTO shards (shard_id, host, port, database_name) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE host = VALUES(host), port = VALUES(port), database_name = VALUES(database_name)",
        [i, config.host, server.port, shardDatabase(i)],
      );
    }
  } finally {
    await directory.end();
  }
}

/** Creates an account unless it exists (the development account, on every start). */
export async function ensureAccount(metaserver: string, user: { username: string; password: string }): Promise<void> {
  const auth = createClient(AuthService, createSatchelTransport({ baseUrl: metaserver }));
  try {
    await auth.createAccount(user);
  } catch (err) {
    if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
  }
}

/** Waits until the service's grpc.health.v1 reports SERVING. */
export async function waitServing(name: string, baseUrl: string, proc?: ManagedProcess, timeoutMs = 60_000): Promise<void> {
  const health = createClient(Health, createSatchelTransport({ baseUrl }));
  await waitFor(`${name} to report SERVING at ${baseUrl}`, timeoutMs, async () => {
    if (proc && !proc.running) throw new WaitAbortedError(`${name} exited:\n${proc.tail()}`);
    const res = await health.check({ service: "" }, { timeoutMs: 1000 });
    return res.status === HealthCheckResponse_ServingStatus.SERVING;
  }, () => proc?.tail() ?? "");
}
