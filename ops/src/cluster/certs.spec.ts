import { createPrivateKey, X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger, createSatchelTransport, startRpcServer, type RpcServer } from "@satchel/proto";
import { Health } from "@satchel/proto/gen/grpc/health/v1/health_pb.js";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { ensureClusterCerts } from "./certs.js";

const dirs: string[] = [];
const servers: RpcServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close(100);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), "satchel-certs-"));
  dirs.push(d);
  return d;
};

describe("the launcher's local CA", () => {
  it("signs a certificate per server for the loopback address and localhost, keys private, reused while valid", () => {
    const dir = scratch();
    const certs = ensureClusterCerts(dir, "127.0.0.1", ["metaserver", "redis"]);
    const ca = new X509Certificate(readFileSync(certs.ca));
    expect(ca.ca).toBe(true);
    for (const name of ["metaserver", "redis"]) {
      const { cert, key } = certs.server(name);
      const leaf = new X509Certificate(readFileSync(cert));
      expect(leaf.ca).toBe(false);
      expect(leaf.checkIssued(ca)).toBe(true);
      expect(leaf.verify(ca.publicKey)).toBe(true);
      expect(leaf.checkIP("127.0.0.1")).toBe("127.0.0.1");
      expect(leaf.checkHost("localhost")).toBe("localhost");
      expect(leaf.checkIP("10.0.0.1")).toBeUndefined();
      expect(leaf.subject).toContain(`CN=${name}`);
      expect(statSync(key).mode & 0o077).toBe(0);
    }
    expect(statSync(join(certs.dir, "ca.key")).mode & 0o077).toBe(0);
    // A second start reuses what is there; a new server gets a certificate from the same CA.
    const before = readFileSync(certs.server("metaserver").cert);
    const again = ensureClusterCerts(dir, "127.0.0.1", ["metaserver", "redis", "minio-0"]);
    expect(readFileSync(again.server("metaserver").cert).equals(before)).toBe(true);
    expect(new X509Certificate(readFileSync(again.server("minio-0").cert)).verify(ca.publicKey)).toBe(true);
  });

  it("makes again what does not fit: a leaf another CA signed, a key that is not its certificate's", () => {
    const dir = scratch();
    const certs = ensureClusterCerts(dir, "127.0.0.1", ["a", "b"]);
    const other = ensureClusterCerts(scratch(), "127.0.0.1", ["a"]);
    copyFileSync(other.server("a").cert, certs.server("a").cert);
    copyFileSync(certs.server("a").key, certs.server("b").key);
    const ca = new X509Certificate(readFileSync(certs.ca));
    const again = ensureClusterCerts(dir, "127.0.0.1", ["a", "b"]);
    expect(readFileSync(again.ca).equals(readFileSync(certs.ca))).toBe(true);
    for (const name of ["a", "b"]) {
      const leaf = new X509Certificate(readFileSync(again.server(name).cert));
      expect(leaf.verify(ca.publicKey)).toBe(true);
      expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(again.server(name).key)))).toBe(true);
    }
  });

  it("a service on it answers TLS clients that trust the CA, and refuses plaintext and other CAs", async () => {
    const certs = ensureClusterCerts(scratch(), "127.0.0.1", ["notifyserver"]);
    const stranger = ensureClusterCerts(scratch(), "127.0.0.1", []);
    const own = certs.server("notifyserver");
    const server = await startRpcServer({
      name: "tls_test", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger: createLogger("test", "silent"),
      auth: { verify: () => ({ kind: "service" as const, userId: "service", service: "operator" as const }), servicePermissions: {} },
      routes: (router) => router.service(NotifyService, {}),
      tls: { cert: readFileSync(own.cert), key: readFileSync(own.key) },
    });
    servers.push(server);
    const check = (baseUrl: string, ca?: Buffer) =>
      createClient(Health, createSatchelTransport({ baseUrl, ca })).check({ service: "" }, { timeoutMs: 5000 }).then(() => undefined, (e) => ConnectError.from(e));
    expect(await check(`https://127.0.0.1:${server.port}`, readFileSync(certs.ca))).toBeUndefined();
    const plaintext = await check(`http://127.0.0.1:${server.port}`);
    expect(plaintext?.code).toBe(Code.Unavailable);
    const untrusted = await check(`https://127.0.0.1:${server.port}`, readFileSync(stranger.ca));
    expect(untrusted?.code).toBe(Code.Unavailable);
    // The message says what to do about it.
    expect(untrusted?.rawMessage).toMatch(/certificate.*SATCHEL_TLS_CA=/);
  });
});
