#!/usr/bin/env node
/**
 * What the server runtime costs per call: the same handler behind the same call pipeline (request
 * id, metrics, service-token authentication) served by grpc-js (what every service runs) and by
 * connect-node on node:http2 (what they ran before), each in a server process of its own, driven
 * alternately in the same run by stock grpc-js clients (4 connections, 64 calls in flight).
 * Reports the server's CPU per call (from /proc) and calls/s. Then the client side, for the SDK's
 * choice of transport: the CPU the calling process spends per call with a bare grpc-js client, with
 * Connect's typed client on Satchel's transport (grpc-js underneath: what the SDK and services use)
 * and on connect-node's gRPC transport (what they used before), against the grpc-js server.
 * Needs no cluster.
 *   node ops/dist/bench/rpc-runtime.js [rounds=3] [seconds per round=4] [in flight=64]
 */
import { fork, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { createClient } from "@connectrpc/connect";
import { CallPipeline, createLogger, createSatchelTransport, pipelineInterceptor, ServiceMetrics, ServiceRegistry, startRpcServer, type ServiceRouter } from "@satchel/proto";
import { NotifyService, PollRequestSchema, PollResponseSchema } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";

const TOKEN = "bench-service-token";
const RUNTIMES = ["connect-node", "grpc-js"] as const;
type Runtime = (typeof RUNTIMES)[number];

const routes = (router: ServiceRouter) => router.service(NotifyService, {
  poll: (req) => ({ advanced: req.cursors.map((c) => ({ namespaceId: c.namespaceId, cursor: c.cursor + 1n })), timeoutSeconds: 30, retryAfterSeconds: 0 }),
});
const auth = { verify: (token: string) => { if (token !== TOKEN) throw new Error("bad token"); return { kind: "service" as const, userId: "service", service: "operator" as const }; }, servicePermissions: {} };

/** The child: serves one runtime on an ephemeral port and reports it. */
async function serve(runtime: Runtime): Promise<void> {
  const logger = createLogger("bench", "warn");
  let port: number;
  if (runtime === "grpc-js") {
    port = (await startRpcServer({ name: "bench", host: "127.0.0.1", port: 0, metricsPort: 0, services: [NotifyService], routes, auth, logger })).port;
  } else {
    const registry = new ServiceRegistry();
    routes(registry);
    const pipeline = new CallPipeline({ logger, metrics: new ServiceMetrics("bench"), auth });
    const handler = connectNodeAdapter({
      routes: (router) => registry.services.forEach(({ desc, impl }) => router.service(desc, impl)),
      interceptors: [pipelineInterceptor(pipeline)],
      acceptCompression: [],
    });
    const server = http2.createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
  }
  process.send!({ port });
}

/** User plus system CPU seconds of a process so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

const REQUEST = create(PollRequestSchema, { cursors: [{ namespaceId: 7n, cursor: 41n }] });

/** Calls Poll from inFlight loops over 4 connections for `seconds`; returns the calls made. */
const CLIENTS = ["grpc-js", "satchel", "connect-node"] as const;
type ClientKind = (typeof CLIENTS)[number];

async function drive(port: number, seconds: number, inFlight: number, client: ClientKind = "grpc-js"): Promise<number> {
  let call: (i: number) => Promise<unknown>;
  let close: () => void;
  if (client === "grpc-js") {
    const clients = Array.from({ length: 4 }, () => new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }));
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${TOKEN}`);
    call = (i) => new Promise<void>((resolve, reject) => {
      clients[i % clients.length].makeUnaryRequest("/satchel.notify.v1.NotifyService/Poll", (r: typeof REQUEST) => Buffer.from(toBinary(PollRequestSchema, r)),
        (b: Buffer) => fromBinary(PollResponseSchema, b), REQUEST, md, (err) => (err ? reject(err) : resolve()));
    });
    close = () => clients.forEach((c) => c.close());
  } else {
    const baseUrl = `http://127.0.0.1:${port}`;
    const transport = () => client === "satchel"
      ? createSatchelTransport({ baseUrl, token: TOKEN })
      : createGrpcTransport({ baseUrl, interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${TOKEN}`), next(req))] });
    const clients = Array.from({ length: 4 }, () => createClient(NotifyService, transport()));
    call = (i) => clients[i % clients.length].poll(REQUEST);
    close = () => undefined;
  }
  const end = Date.now() + seconds * 1000;
  let calls = 0;
  await Promise.all(Array.from({ length: inFlight }, async (_, i) => {
    while (Date.now() < end) {
      await call(i);
      calls++;
    }
  }));
  close();
  return calls;
}

async function main(): Promise<void> {
  if (process.argv[2] === "serve") return serve(process.argv[3] as Runtime);
  const rounds = Number(process.argv[2] ?? 3);
  const seconds = Number(process.argv[3] ?? 4);
  const inFlight = Number(process.argv[4] ?? 64);
  const servers = new Map<Runtime, { child: ChildProcess; port: number; cpu: number; calls: number; s: number }>();
  for (const r of RUNTIMES) {
    const child = fork(process.argv[1], ["serve", r], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const { port } = await new Promise<{ port: number }>((resolve) => child.once("message", (m) => resolve(m as { port: number })));
    servers.set(r, { child, port, cpu: 0, calls: 0, s: 0 });
  }
  try {
    for (const s of servers.values()) await drive(s.port, 1, inFlight); // warm up (JIT)
    for (let round = 0; round < rounds; round++) {
      for (const r of round % 2 === 0 ? RUNTIMES : [...RUNTIMES].reverse()) {
        const s = servers.get(r)!;
        const cpu = cpuSeconds(s.child.pid!);
        const t = performance.now();
        s.calls += await drive(s.port, seconds, inFlight);
        s.s += (performance.now() - t) / 1000;
        s.cpu += cpuSeconds(s.child.pid!) - cpu;
      }
    }
    for (const [r, s] of servers) {
      console.log(`${r.padEnd(13)} server CPU ${((s.cpu / s.calls) * 1e6).toFixed(0)} µs per call, ${(s.calls / s.s).toFixed(0)} calls/s, ${inFlight} in flight`);
    }
    const [before, after] = RUNTIMES.map((r) => servers.get(r)!);
    console.log(`connect-node/grpc-js: CPU per call ${((before.cpu / before.calls) / (after.cpu / after.calls)).toFixed(2)}×, calls/s ${((after.calls / after.s) / (before.calls / before.s)).toFixed(2)}× in grpc-js's favour`);
    // The client side, against the grpc-js server.
    const clientCost = Object.fromEntries(CLIENTS.map((c) => [c, { cpu: 0, calls: 0 }])) as Record<ClientKind, { cpu: number; calls: number }>;
    for (const c of CLIENTS) await drive(after.port, 1, inFlight, c); // warm up (JIT)
    for (let round = 0; round < rounds; round++) {
      for (const c of round % 2 === 0 ? CLIENTS : [...CLIENTS].reverse()) {
        const used = process.cpuUsage();
        clientCost[c].calls += await drive(after.port, seconds, inFlight, c);
        const d = process.cpuUsage(used);
        clientCost[c].cpu += (d.user + d.system) / 1e6;
      }
    }
    const label: Record<ClientKind, string> = { "grpc-js": "bare grpc-js", satchel: "Connect client, Satchel transport", "connect-node": "Connect client, connect-node transport" };
    for (const c of CLIENTS) console.log(`client ${label[c].padEnd(40)} CPU ${((clientCost[c].cpu / clientCost[c].calls) * 1e6).toFixed(0)} µs per call`);
  } finally {
    for (const s of servers.values()) s.child.kill();
  }
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
