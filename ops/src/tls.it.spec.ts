import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { connect as tlsConnect } from "node:tls";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport, redisTls } from "@satchel/proto";
import { Health } from "@satchel/proto/gen/grpc/health/v1/health_pb.js";
import { ensureClusterCerts } from "./cluster/certs.js";
import { httpGet, mysqlTlsOf } from "./cluster/trust.js";
import { runCli } from "./testing/cli.js";

const { endpoints } = inject("cluster");
const ca = readFileSync(endpoints.ca!);
// A CA of its own that signed none of the cluster's certificates: trusting it alone must not do.
const strangerDir = mkdtempSync(join(tmpdir(), "satchel-stranger-ca-"));
const strangerCa = readFileSync(ensureClusterCerts(strangerDir, "127.0.0.1", []).ca);
afterAll(() => rmSync(strangerDir, { recursive: true, force: true }));

const services = () => [endpoints.metaserver, endpoints.blockserver, endpoints.notifyserver];
const healthCode = (baseUrl: string, trust?: Buffer) =>
  createClient(Health, createSatchelTransport({ baseUrl, ca: trust }))
    .check({ service: "" }, { timeoutMs: 5000 })
    .then(() => "ok", (err) => Code[ConnectError.from(err).code]);
const errorOf = (p: Promise<unknown>) => p.then(() => "no error", (err: Error) => err.message);

describe("TLS on every hop", () => {
  it("every endpoint a client is given is TLS, with the cluster's CA", () => {
    for (const url of [...services(), ...Object.values(endpoints.web), endpoints.shareLinks]) expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoints.redisUrl).toMatch(/^rediss:\/\//);
    for (const node of endpoints.storageNodes) expect(node.endpoint).toMatch(/^https:\/\//);
    expect(ca.toString()).toContain("BEGIN CERTIFICATE");
  });

  it("the services answer only TLS clients that trust the cluster's CA", async () => {
    for (const url of services()) {
      expect(await healthCode(url, ca)).toBe("ok");
      // Plaintext to a TLS port, and TLS trusting another CA, never reach a handler.
      expect(await healthCode(url.replace("https:", "http:"))).toBe("Unavailable");
      expect(await healthCode(url, strangerCa)).toBe("Unavailable");
    }
    for (const url of Object.values(endpoints.web)) {
      // Any HTTP answer shows the handshake succeeded (a bare GET is no Connect call).
      expect((await httpGet(`${url}/grpc.health.v1.Health/Check`, ca)).status).toBeGreaterThanOrEqual(400);
      expect(await errorOf(httpGet(`${url}/grpc.health.v1.Health/Check`, strangerCa))).toMatch(/certificate/);
    }
    expect((await httpGet(`${endpoints.shareLinks}/s/not-a-link`, ca)).status).toBe(404);
    expect(await errorOf(httpGet(`${endpoints.shareLinks.replace("https:", "http:")}/s/not-a-link`, ca))).toMatch(/socket hang up|ECONNRESET/);
    expect(await errorOf(httpGet(`${endpoints.shareLinks}/s/not-a-link`, strangerCa))).toMatch(/certificate/);
  });

  it("MariaDB takes no plaintext connection; over TLS it checks the CA", async () => {
    const url = new URL(endpoints.directoryUrl);
    const settings = { host: url.hostname, port: Number(url.port), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password), database: url.pathname.slice(1) };
    // The same account and password that work over TLS are refused without it (MariaDB refuses an
    // insecure transport as a failed sign-in).
    expect(await errorOf(mysql.createConnection(settings))).toMatch(/^Access denied for user 'satchel'/);
    expect(await errorOf(mysql.createConnection({ ...settings, ssl: { ca: strangerCa } }))).toMatch(/certificate/);
    const conn = await mysql.createConnection({ ...settings, ...mysqlTlsOf(endpoints) });
    try {
      const [rows] = await conn.query<mysql.RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_version'");
      expect(rows[0].Value).toMatch(/^TLSv1\.[23]$/);
      const [required] = await conn.query<mysql.RowDataPacket[]>("SELECT @@require_secure_transport AS on_");
      expect(Number(required[0].on_)).toBe(1);
    } finally {
      await conn.end();
    }
  });

  it("Redis listens for TLS only", async () => {
    const { hostname, port } = new URL(endpoints.redisUrl);
    const plaintext = await new Promise<string>((resolve) => {
      const socket = createConnection({ host: hostname, port: Number(port) }, () => socket.write("PING\r\n"));
      let got = "";
      socket.on("data", (d) => (got += d.toString("latin1")));
      socket.on("close", () => resolve(got));
      socket.on("error", () => undefined);
      socket.setTimeout(3000, () => socket.destroy());
    });
    expect(plaintext).not.toContain("+PONG");
    const redis = new Redis(endpoints.redisUrl, { ...redisTls(endpoints.redisUrl, { ca }), maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await redis.connect();
      expect(await redis.ping()).toBe("PONG");
    } finally {
      redis.disconnect();
    }
  });

  it("Redis lets in only its one user, with the password from the state directory, and not to administer it", async () => {
    const url = new URL(endpoints.redisUrl);
    expect(url.username).toBe("satchel");
    expect(url.password.length).toBeGreaterThanOrEqual(16);
    // What a client without the password is told, on the wire.
    const said = (command: string) => new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca, servername: url.hostname }, () => socket.write(command));
      socket.once("data", (d) => (socket.destroy(), resolve(d.toString("latin1"))));
      socket.on("error", (e) => resolve(e.message));
    });
    expect(await said("PING\r\n")).toMatch(/^-NOAUTH/);
    expect(await said("AUTH default anything\r\n")).toMatch(/^-WRONGPASS/);
    expect(await said("AUTH satchel not-the-password\r\n")).toMatch(/^-WRONGPASS/);
    const redis = new Redis(endpoints.redisUrl, { ...redisTls(endpoints.redisUrl, { ca }), maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await redis.connect();
      expect(await redis.ping()).toBe("PONG");
      for (const admin of [() => redis.config("GET", "requirepass"), () => redis.flushall(), () => redis.keys("*"), () => redis.call("ACL", "LIST")]) {
        expect(await admin().then(() => "ran", (e: Error) => e.message)).toMatch(/NOPERM/);
      }
      expect(await redis.call("CONFIG", "GET", "protected-mode").catch(() => "refused")).toBe("refused");
    } finally {
      redis.disconnect();
    }
  });

  it("MinIO nodes serve HTTPS only", async () => {
    for (const node of endpoints.storageNodes) {
      expect((await httpGet(`${node.endpoint}/minio/health/live`, ca)).status).toBe(200);
      // MinIO answers plain HTTP on its TLS port with 400 "Client sent an HTTP request to an HTTPS server".
      expect((await httpGet(`${node.endpoint.replace("https:", "http:")}/minio/health/live`)).status).toBe(400);
      expect(await errorOf(httpGet(`${node.endpoint}/minio/health/live`, strangerCa))).toMatch(/certificate/);
    }
  });

  it("the CLI finds the CA in the cluster file, and names the setting when it has none", async () => {
    const dir = mkdtempSync(join(tmpdir(), "satchel-tls-cli-"));
    try {
      const clusterFile = join(dir, "cluster.json");
      writeFileSync(clusterFile, JSON.stringify(endpoints));
      const env = { ...process.env, SATCHEL_CLUSTER_FILE: clusterFile, SATCHEL_TLS_CA: "" };
      const ls = await runCli(["ls", "/"], env).done;
      expect(ls.stderr).toBe("");
      expect(ls.code).toBe(0);
      writeFileSync(clusterFile, JSON.stringify({ ...endpoints, ca: undefined }));
      const untrusted = await runCli(["ls", "/"], env).done;
      expect(untrusted.code).toBe(1);
      expect(untrusted.stderr).toMatch(/Unavailable: .*certificate.*SATCHEL_TLS_CA=/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
