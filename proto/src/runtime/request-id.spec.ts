import { createClient } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { NotifyService } from "../gen/satchel/notify/v1/notify_pb.js";
import { createLogger } from "./logger.js";
import { REQUEST_ID_HEADER } from "./interceptors.js";
import { startRpcServer, type RpcServer } from "./server.js";
import { createSatchelTransport } from "./transport.js";

const servers: RpcServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close(100);
});

const logger = createLogger("test", "silent");
const allow = { verify: () => ({ kind: "service" as const, userId: "service", service: "operator" as const }), servicePermissions: {} };

describe("request ids", () => {
  it("follow a call from one service into the calls it makes to another", async () => {
    const seen: string[] = [];
    const downstream = await startRpcServer({
      name: "downstream", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger, auth: allow,
      routes: (router) => router.service(NotifyService, {
        poll(_req, hctx) {
          seen.push(hctx.requestHeader.get(REQUEST_ID_HEADER) ?? "");
          return { advanced: [], timeoutSeconds: 0, retryAfterSeconds: 0 };
        },
      }),
    });
    servers.push(downstream);
    const downstreamClient = createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${downstream.port}`, token: "t" }));
    const upstream = await startRpcServer({
      name: "upstream", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], logger, auth: allow,
      routes: (router) => router.service(NotifyService, {
        async poll(req) {
          await new Promise((r) => setTimeout(r, 5));
          return downstreamClient.poll(req);
        },
      }),
    });
    servers.push(upstream);
    const client = createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${upstream.port}`, token: "t" }));
    await client.poll({ cursors: [{ namespaceId: 1n, cursor: 0n }] }, { headers: { [REQUEST_ID_HEADER]: "trace-42" } });
    await client.poll({ cursors: [{ namespaceId: 1n, cursor: 0n }] });
    expect(seen[0]).toBe("trace-42");
    // Without one from the caller, the upstream service makes one up and passes that on.
    expect(seen[1]).toMatch(/^[0-9a-f-]{36}$/);
  });
});
