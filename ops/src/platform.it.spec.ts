import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "@satchel/proto/gen/grpc/health/v1/health_pb.js";
import { MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { REPO_ROOT } from "./config.js";
import { signIn } from "./testing/accounts.js";

const run = promisify(execFile);
const { endpoints } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const hostPort = (url: string) => new URL(url).host;

// A stock grpc-js client built from the .proto files alone, as any other service would use it.
const definition = protoLoader.loadSync(
  ["satchel/meta/v1/meta.proto", "satchel/block/v1/block.proto", "satchel/notify/v1/notify.proto", "grpc/health/v1/health.proto"],
  { includeDirs: [join(REPO_ROOT, "proto")], longs: String, enums: String, defaults: true, oneofs: true },
);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = grpc.loadPackageDefinition(definition) as any;
const LIMIT = 16 * 1024 * 1024 + 64 * 1024;
const options = { "grpc.max_send_message_length": LIMIT, "grpc.max_receive_message_length": LIMIT };
let userToken = "";
beforeAll(async () => {
  userToken = await signIn(endpoints, endpoints.devUser);
});
const auth = () => {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${userToken}`);
  return md;
};
const unary = <T>(client: grpc.Client, method: string, req: object): Promise<T> =>
  new Promise((resolve, reject) => {
    (client as unknown as Record<string, Function>)[method](req, auth(), (err: Error | null, res: T) => (err ? reject(err) : resolve(res)));
  });

// The suite's cluster runs with TLS on every hop: a stock client needs only the cluster's CA.
if (!endpoints.ca) throw new Error("the test cluster must run with TLS (SATCHEL_PLAINTEXT is for local development only)");
const ca = readFileSync(endpoints.ca);
const credentials = grpc.credentials.createSsl(ca);
const meta = new pkg.satchel.meta.v1.MetaService(hostPort(endpoints.metaserver), credentials, options);
const block = new pkg.satchel.block.v1.BlockService(hostPort(endpoints.blockserver), credentials, options);
const notify = new pkg.satchel.notify.v1.NotifyService(hostPort(endpoints.notifyserver), credentials, options);
afterAll(() => [meta, block, notify].forEach((c) => c.close()));

describe("any stock gRPC client can call every service", () => {
  it("grpc-js: health of all three services is SERVING", async () => {
    for (const url of [endpoints.metaserver, endpoints.blockserver, endpoints.notifyserver]) {
      const health = new pkg.grpc.health.v1.Health(hostPort(url), credentials);
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        health.Check({ service: "" }, (err: Error | null, r: { status: string }) => (err ? reject(err) : resolve(r))));
      expect(res.status).toBe("SERVING");
      health.close();
    }
  });

  it("grpc-js: stores a 16 MiB block, commits it, reads it back, and hears the commit on a Subscribe stream", async () => {
    const data = randomBytes(16 * 1024 * 1024);
    const hash = sha(data);
    const put = await unary<{ size: number; grant: Buffer }>(block, "PutBlock", { hash, data });
    expect(put.size).toBe(data.length);
    expect(put.grant.length).toBeGreaterThan(0);

    const root = await unary<{ file: { namespaceId: string } }>(meta, "GetFileMetadata", { path: "/" });
    const namespaceId = root.file.namespaceId;
    const events: { advanced?: { cursor: string } }[] = [];
    const stream = notify.Subscribe({ namespaceIds: [namespaceId] }, auth());
    // The stream may first say where the namespace stood (a cursor Redis still knows); the commit's
    // own advance must follow.
    let failedWith: Error | undefined;
    stream.on("data", (e: { advanced?: { cursor: string } }) => events.push(e));
    stream.on("error", (err: grpc.ServiceError) => void (err.code !== grpc.status.CANCELLED && (failedWith = err)));
    await new Promise((r) => setTimeout(r, 300));

    const committed = await unary<{ file: { cursor: string; revision: string } }>(meta, "CommitFile", {
      path: "/stock-client/big.bin", blocks: [{ hash, size: data.length, grant: put.grant }], size: data.length, parentRevision: 0,
    });
    const deadline = Date.now() + 10_000;
    while (!events.some((e) => e.advanced?.cursor === committed.file.cursor) && !failedWith && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(failedWith).toBeUndefined();
    expect(events.map((e) => e.advanced?.cursor).filter(Boolean)).toContain(committed.file.cursor);
    stream.cancel();

    const got = await unary<{ file: { size: string; blocks: { hash: Buffer; grant: Buffer }[] } }>(meta, "GetFileMetadata", { path: "/stock-client/big.bin" });
    expect(got.file.size).toBe(String(data.length));
    // The block's grant comes with the file's metadata; without it the read is refused.
    expect(await unary(block, "GetBlock", { hash: got.file.blocks[0].hash }).then(() => "ok", (e: grpc.ServiceError) => e.code)).toBe(grpc.status.PERMISSION_DENIED);
    const back = await unary<{ data: Buffer }>(block, "GetBlock", { hash: got.file.blocks[0].hash, grant: got.file.blocks[0].grant });
    expect(sha(back.data).equals(hash)).toBe(true);
    const listing = await unary<{ entries: { path: string }[] }>(meta, "ListFolder", { path: "/stock-client" });
    expect(listing.entries.map((e) => e.path)).toEqual(["/stock-client/big.bin"]);
  });

  it("grpc-js: bad input gets a clear status, not a crash", async () => {
    const codeOf = (p: Promise<unknown>) => p.then(() => "ok", (e: grpc.ServiceError) => e.code);
    expect(await codeOf(unary(meta, "GetFileMetadata", { path: "/no/such/file" }))).toBe(grpc.status.NOT_FOUND);
    expect(await codeOf(unary(meta, "GetFileMetadata", { path: "/a/../b" }))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(unary(meta, "CommitFile", { path: "/x", blocks: [{ hash: randomBytes(32), size: 3 }], size: 4 }))).toBe(grpc.status.INVALID_ARGUMENT);
    const missing = await unary<{ missingBlocks: Buffer[] }>(meta, "CommitFile", { path: "/x", blocks: [{ hash: randomBytes(32), size: 4 }], size: 4 });
    expect(missing.missingBlocks).toHaveLength(1);
    // A client that allows itself to send more than the server's limit gets RESOURCE_EXHAUSTED from the server.
    const lax = new pkg.satchel.block.v1.BlockService(hostPort(endpoints.blockserver), credentials, {
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
    const big = Buffer.alloc(LIMIT + 1024);
    expect(await codeOf(unary(lax, "PutBlock", { hash: sha(big), data: big }))).toBe(grpc.status.RESOURCE_EXHAUSTED);
    lax.close();
  });

  it("buf curl --cacert --reflect lists and calls every service with no .proto files", async () => {
    const buf = join(REPO_ROOT, "node_modules", ".bin", "buf");
    const base = ["curl", "--protocol", "grpc", "--cacert", endpoints.ca!, "--reflect"];
    const services: Record<string, string> = {
      metaserver: "satchel.meta.v1.MetaService",
      blockserver: "satchel.block.v1.BlockService",
      notifyserver: "satchel.notify.v1.NotifyService",
    };
    for (const [name, service] of Object.entries(services)) {
      const url = endpoints[name as "metaserver"];
      const { stdout: methods } = await run(buf, [...base, "--list-methods", url]);
      expect(methods).toContain(`${service}/`);
      const { stdout: health } = await run(buf, [...base, "-d", "{}", `${url}/grpc.health.v1.Health/Check`]);
      expect(JSON.parse(health)).toEqual({ status: "SERVING" });
    }
    const { stdout } = await run(buf, [
      ...base, "-H", `authorization: Bearer ${userToken}`, "-d", '{"path": "/"}',
      `${endpoints.metaserver}/satchel.meta.v1.MetaService/ListFolder`,
    ]);
    expect(JSON.parse(stdout).entries.length).toBeGreaterThan(0);
  });
});

describe("browsers' protocols: Connect and gRPC-Web on each service's web port, from the same handlers", () => {
  it("Connect (HTTP/1.1): health, an authenticated call, and the same statuses as gRPC", async () => {
    for (const url of Object.values(endpoints.web)) {
      expect(url).toMatch(/^https:/);
      const health = createClient(Health, createConnectTransport({ baseUrl: url, httpVersion: "1.1", nodeOptions: { ca } }));
      expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
    const files = createClient(MetaService, createConnectTransport({ baseUrl: endpoints.web.metaserver, httpVersion: "1.1", nodeOptions: { ca } }));
    const headers = { authorization: `Bearer ${userToken}` };
    expect((await files.listFolder({ path: "/" }, { headers })).entries.length).toBeGreaterThan(0);
    const denied = await files.listFolder({ path: "/" }).then(() => undefined, (e) => ConnectError.from(e));
    expect(denied?.code).toBe(Code.Unauthenticated);
    const bad = await files.listFolder({ path: "no-leading-slash" }, { headers }).then(() => undefined, (e) => ConnectError.from(e));
    expect(bad?.code).toBe(Code.InvalidArgument);
  });

  it("gRPC-Web (HTTP/1.1): a unary call and a Subscribe stream that hears a commit", async () => {
    const transport = createGrpcWebTransport({ baseUrl: endpoints.web.notifyserver, httpVersion: "1.1", nodeOptions: { ca } });
    const headers = { authorization: `Bearer ${userToken}` };
    const notifications = createClient(NotifyService, transport);
    const ac = new AbortController();
    const stream = notifications.subscribe({}, { headers, signal: ac.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.event.case).toBe("heartbeat");
    const files = createClient(MetaService, createGrpcWebTransport({ baseUrl: endpoints.web.metaserver, httpVersion: "1.1", nodeOptions: { ca } }));
    const folder = await files.createFolder({ path: `/web-${randomBytes(4).toString("hex")}` }, { headers });
    for (;;) {
      const { value } = await stream.next();
      if (value?.event.case === "advanced" && value.event.value.namespaceId === folder.folder!.namespaceId && value.event.value.cursor >= folder.folder!.cursor) break;
    }
    ac.abort();
  });
});

describe("observability", () => {
  it("every service exposes process and RPC metrics on its own port", async () => {
    for (const name of ["metaserver", "blockserver", "notifyserver"] as const) {
      const text = await (await fetch(endpoints.metrics[name])).text();
      expect(text).toContain("process_resident_memory_bytes");
      expect(text).toContain(`satchel_${name}_rpc_requests_total`);
      expect(text).toContain(`satchel_${name}_rpc_duration_seconds_bucket`);
    }
    const meta = await (await fetch(endpoints.metrics.metaserver)).text();
    expect(meta).toContain("satchel_metaserver_reference_outbox_oldest_seconds");
    const block = await (await fetch(endpoints.metrics.blockserver)).text();
    for (const name of ["satchel_blockserver_storage_node_up", "satchel_blockserver_scrub_bytes_verified_total", "satchel_blockserver_gc_blocks_deleted_total"]) {
      expect(block).toContain(name);
    }
    expect(meta).toMatch(/satchel_metaserver_rpc_requests_total\{method="satchel.meta.v1.MetaService\/GetFileMetadata",code="NotFound"\} [1-9]/);
  });
});

describe("the satchel CLI", () => {
  it("puts, lists and gets a file byte-identical", async () => {
    const dir = mkdtempSync(join(tmpdir(), "satchel-cli-"));
    const content = randomBytes(5 * 1024 * 1024 + 3);
    writeFileSync(join(dir, "in.bin"), content);
    const cli = join(REPO_ROOT, "client-sdk", "dist", "cli", "bin.js");
    const env = {
      ...process.env,
      SATCHEL_METASERVER_URL: endpoints.metaserver,
      SATCHEL_BLOCKSERVER_URL: endpoints.blockserver,
      SATCHEL_USERNAME: endpoints.devUser.username,
      SATCHEL_PASSWORD: endpoints.devUser.password,
      SATCHEL_SERVICE_TOKEN: endpoints.serviceToken,
      SATCHEL_TLS_CA: endpoints.ca!,
    };
    const put = await run(process.execPath, [cli, "put", join(dir, "in.bin"), "/cli/in.bin"], { env });
    expect(put.stdout).toMatch(/\/cli\/in\.bin\s+rev \d+/);
    const ls = await run(process.execPath, [cli, "ls", "/cli"], { env });
    expect(ls.stdout).toContain("/cli/in.bin");
    await run(process.execPath, [cli, "get", "/cli/in.bin", join(dir, "out.bin")], { env });
    expect(sha(readFileSync(join(dir, "out.bin"))).equals(sha(content))).toBe(true);
    const scrub = await run(process.execPath, [cli, "admin", "scrub", "--status"], { env });
    expect(scrub.stdout).toMatch(/progress:\s+\d+\/\d+ blocks/);
    expect(scrub.stdout).toMatch(/findings:\s+\d+ shards missing, \d+ corrupt, \d+ repaired, \d+ blocks lost/);
    const gc = await run(process.execPath, [cli, "admin", "gc"], { env });
    expect(gc.stdout).toMatch(/^\d+ candidates, \d+ blocks deleted, .* reclaimed, 0 orphan shards removed/);
    const reconcile = await run(process.execPath, [cli, "admin", "reconcile"], { env });
    expect(reconcile.stdout).toMatch(/^\d+ blocks checked, \d+ drifted/);
    const badGrace = await run(process.execPath, [cli, "admin", "gc", "--grace", "-5"], { env }).catch((e: { stderr: string }) => e);
    expect((badGrace as { stderr: string }).stderr).toMatch(/--grace takes a whole number of seconds/);
    const missing = await run(process.execPath, [cli, "get", "/cli/nope", join(dir, "x")], { env }).catch((e: { stderr: string; code: number }) => e);
    expect((missing as { code: number }).code).toBe(1);
    expect((missing as { stderr: string }).stderr).toMatch(/NotFound: "\/cli\/nope" does not exist/);
  });
});
