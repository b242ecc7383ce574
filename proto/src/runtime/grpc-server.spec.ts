import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { NotifyService, SubscribeResponseSchema } from "../gen/satchel/notify/v1/notify_pb.js";
import { encodeOnce, peerHost } from "./grpc-server.js";
import { createLogger } from "./logger.js";
import { startRpcServer, type RpcServer } from "./server.js";
import { createSatchelTransport } from "./transport.js";

const servers: RpcServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close(100);
});

const logger = createLogger("test", "silent");
const allow = { verify: () => ({ kind: "service" as const, userId: "service", service: "operator" as const }), servicePermissions: {} };
const advanced = (cursor: bigint) => create(SubscribeResponseSchema, { event: { case: "advanced", value: { namespaceId: 1n, cursor } } });

describe("the grpc-js runtime", () => {
  it("writes a message encoded once as those bytes to every stream, and ends a handler when its client cancels", async () => {
    const shared = encodeOnce(SubscribeResponseSchema, advanced(7n));
    const ended: string[] = [];
    const server = await startRpcServer({
      name: "t", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger, auth: allow,
      routes: (router) => router.service(NotifyService, {
        async *subscribe(_req, hctx) {
          yield shared;
          // Changed after encoding: the bytes on the wire are still those made by encodeOnce.
          if (shared.event.case === "advanced") shared.event.value.cursor = 8n;
          yield shared;
          await new Promise<void>((resolve) => hctx.signal.addEventListener("abort", () => resolve(), { once: true }));
          ended.push(ConnectError.from(hctx.signal.reason).code === Code.Canceled ? "cancelled" : String(hctx.signal.reason));
        },
      }),
    });
    servers.push(server);
    const client = createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${server.port}`, token: "t" }));
    for (let i = 0; i < 2; i++) {
      const ac = new AbortController();
      const got: bigint[] = [];
      for await (const m of client.subscribe({}, { signal: ac.signal })) {
        if (m.event.case === "advanced") got.push(m.event.value.cursor);
        if (got.length === 2) break;
      }
      ac.abort();
      expect(got).toEqual([7n, 7n]);
    }
    await expect.poll(() => ended).toEqual(["cancelled", "cancelled"]);
  });

  it("a deadline that passes ends the call DEADLINE_EXCEEDED and aborts the handler's signal", async () => {
    let aborted = false;
    const server = await startRpcServer({
      name: "t", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger, auth: allow,
      routes: (router) => router.service(NotifyService, {
        async poll(_req, hctx) {
          await new Promise<void>((resolve) => hctx.signal.addEventListener("abort", () => resolve(), { once: true }));
          aborted = true;
          return { advanced: [], timeoutSeconds: 0, retryAfterSeconds: 0 };
        },
      }),
    });
    servers.push(server);
    const client = createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${server.port}`, token: "t" }));
    const err = await client.poll({ cursors: [] }, { timeoutMs: 200 }).then(() => undefined, (e) => ConnectError.from(e));
    expect(err?.code).toBe(Code.DeadlineExceeded);
    await expect.poll(() => aborted).toBe(true);
  });

  it("answers a method the service does not implement with UNIMPLEMENTED, and a missing token with UNAUTHENTICATED", async () => {
    const server = await startRpcServer({
      name: "t", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger,
      auth: { verify: () => ({ kind: "service" as const, userId: "service", service: "operator" as const }), servicePermissions: {} },
      routes: (router) => router.service(NotifyService, {}),
    });
    servers.push(server);
    const url = `http://127.0.0.1:${server.port}`;
    const code = (p: Promise<unknown>) => p.then(() => "ok", (e) => Code[ConnectError.from(e).code]);
    expect(await code(createClient(NotifyService, createSatchelTransport({ baseUrl: url, token: "t" })).poll({}))).toBe("Unimplemented");
    expect(await code(createClient(NotifyService, createSatchelTransport({ baseUrl: url })).poll({}))).toBe("Unauthenticated");
  });
});

describe("a grpc-js peer's address", () => {
  it("is its host without the port, for IPv4 and IPv6, with or without the scheme grpc-js may put first", () => {
    expect(peerHost("127.0.0.2:50321")).toBe("127.0.0.2");
    expect(peerHost("ipv4:10.1.2.3:443")).toBe("10.1.2.3");
    expect(peerHost("[::1]:50321")).toBe("::1");
    expect(peerHost("ipv6:[fe80::1]:8")).toBe("fe80::1");
    expect(peerHost("unix:/tmp/sock")).toBe("unix:/tmp/sock");
  });
});
