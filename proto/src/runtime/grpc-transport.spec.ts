import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { BlockService } from "../gen/satchel/block/v1/block_pb.js";
import { NotifyService } from "../gen/satchel/notify/v1/notify_pb.js";
import { createLogger } from "./logger.js";
import { startRpcServer, type RpcServer, type RpcServerOptions } from "./server.js";
import { createSatchelTransport } from "./transport.js";

const servers: RpcServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close(100);
});

const logger = createLogger("test", "silent");
const tokens: string[] = [];
const auth = {
  verify: (token: string | undefined) => {
    if (token) tokens.push(token);
    return { kind: "service" as const, userId: "service", service: "operator" as const };
  },
  servicePermissions: {},
};

async function serve(routes: RpcServerOptions["routes"], services: RpcServerOptions["services"], port = 0) {
  const server = await startRpcServer({ name: "t", host: "127.0.0.1", port, metricsPort: 0, services, logger, auth, routes });
  servers.push(server);
  return server;
}

const codeOf = (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`);

describe("the grpc-js client transport under Connect clients", () => {
  it("carries the server's code and message, large messages both ways, and a fresh token per call", async () => {
    const stored = new Map<string, Uint8Array>();
    const server = await serve((router) => router.service(BlockService, {
      putBlock(req) {
        if (req.hash.length === 0) throw new ConnectError("hash is required", Code.InvalidArgument);
        stored.set(Buffer.from(req.hash).toString("hex"), req.data);
        return { size: req.data.length };
      },
      getBlock(req) {
        const hex = Buffer.from(req.hash).toString("hex");
        const data = stored.get(hex);
        if (!data) throw new ConnectError(`block ${hex} not found`, Code.NotFound);
        return { data };
      },
    }), [BlockService]);
    let n = 0;
    const blocks = createClient(BlockService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${server.port}`, token: async () => `t${++n}` }));
    const data = Buffer.alloc(12 * 1024 * 1024, 7);
    await blocks.putBlock({ hash: Buffer.from("aa", "hex"), data });
    expect(Buffer.from((await blocks.getBlock({ hash: Buffer.from("aa", "hex") })).data).equals(data)).toBe(true);
    expect(await codeOf(blocks.putBlock({ data }))).toBe("InvalidArgument: hash is required");
    expect(await codeOf(blocks.getBlock({ hash: Buffer.from("bb", "hex") }))).toBe("NotFound: block bb not found");
    expect(tokens.slice(-4)).toEqual(["t1", "t2", "t3", "t4"]);
  });

  it("an aborted signal cancels a unary call; a stream's error reaches its reader even before it reads", async () => {
    let cancelled = false;
    const server = await serve((router) => router.service(NotifyService, {
      async poll(_req, hctx) {
        await new Promise<void>((resolve) => hctx.signal.addEventListener("abort", () => resolve(), { once: true }));
        cancelled = true;
        return {};
      },
      // eslint-disable-next-line require-yield
      async *subscribe() {
        throw new ConnectError("subscriptions are closed", Code.FailedPrecondition);
      },
    }), [NotifyService]);
    const notify = createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${server.port}`, token: "t" }));
    const ac = new AbortController();
    const polled = codeOf(notify.poll({}, { signal: ac.signal }));
    setTimeout(() => ac.abort(), 100);
    expect(await polled).toMatch(/^Canceled/);
    await expect.poll(() => cancelled).toBe(true);
    const stream = notify.subscribe({})[Symbol.asyncIterator]();
    await new Promise((r) => setTimeout(r, 200));
    expect(await codeOf(stream.next())).toBe("FailedPrecondition: subscriptions are closed");
  });

  it("carries the response headers and trailers a handler sets, and the request id the server gives", async () => {
    const server = await serve((router) => router.service(NotifyService, {
      poll(_req, hctx) {
        hctx.responseHeader.set("x-served-by", "t1");
        hctx.responseTrailer.set("x-cost", "3");
        return {};
      },
    }), [NotifyService]);
    const notify = createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${server.port}`, token: "t" }));
    let header: Headers | undefined;
    let trailer: Headers | undefined;
    await notify.poll({}, { headers: { "x-request-id": "req-42" }, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) });
    expect(header?.get("x-served-by")).toBe("t1");
    expect(header?.get("x-request-id")).toBe("req-42");
    expect(trailer?.get("x-cost")).toBe("3");
  });

  it("is UNAVAILABLE while the server is down and reaches it within a second or two of its return", async () => {
    const first = await serve((router) => router.service(NotifyService, { poll: () => ({}) }), [NotifyService]);
    const port = first.port;
    const notify = createClient(NotifyService, createSatchelTransport({ baseUrl: `http://127.0.0.1:${port}`, token: "t" }));
    expect(await codeOf(notify.poll({}))).toBe("ok");
    await first.close(100);
    expect(await codeOf(notify.poll({}))).toMatch(/^Unavailable/);
    // Down long enough for several failed reconnects, each backing off.
    await new Promise((r) => setTimeout(r, 3000));
    await serve((router) => router.service(NotifyService, { poll: () => ({}) }), [NotifyService], port);
    const back = Date.now();
    while ((await codeOf(notify.poll({}))) !== "ok") await new Promise((r) => setTimeout(r, 50));
    expect(Date.now() - back).toBeLessThan(2500);
  });
});
