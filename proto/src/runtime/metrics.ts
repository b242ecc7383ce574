import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Code } from "@connectrpc/connect";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Latency buckets (seconds) from sub-millisecond metadata calls to multi-second block writes. */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * One Prometheus registry per service process: default process metrics plus RPC metrics that the
 * shared interceptor fills for every method. Names follow satchel_<service>_<thing>_<unit>;
 * labels are bounded (method names and gRPC codes, never paths or hashes).
 */
export class ServiceMetrics {
  readonly registry = new Registry();
  readonly rpcRequests: Counter<"method" | "code">;
  readonly rpcDuration: Histogram<"method">;
  readonly rpcInFlight: Gauge<"method">;
  readonly rateLimited: Counter<"class">;
  readonly rateLimitsLocal: Gauge;

  constructor(readonly service: string) {
    collectDefaultMetrics({ register: this.registry });
    const prefix = `satchel_${service}_rpc`;
    this.rpcRequests = new Counter({
      name: `${prefix}_requests_total`,
      help: "RPCs completed, by method and gRPC status code.",
      labelNames: ["method", "code"],
      registers: [this.registry],
    });
    this.rpcDuration = new Histogram({
      name: `${prefix}_duration_seconds`,
      help: "RPC latency from request to final status, by method.",
      labelNames: ["method"],
      buckets: RPC_BUCKETS,
      registers: [this.registry],
    });
    this.rpcInFlight = new Gauge({
      name: `${prefix}_in_flight`,
      help: "RPCs currently being served, by method.",
      labelNames: ["method"],
      registers: [this.registry],
    });
    this.rateLimited = new Counter({
      name: `satchel_${service}_rate_limited_total`,
      help: "Calls refused RESOURCE_EXHAUSTED by a rate limit, by class (metadata, commits, blocks; signin, signup, failedSignins, links).",
      labelNames: ["class"],
      registers: [this.registry],
    });
    this.rateLimitsLocal = new Gauge({
      name: `satchel_${service}_rate_limits_local`,
      help: "1 while Redis does not answer and this process enforces the rate limits with buckets of its own (the limits then hold per process, not platform-wide).",
      registers: [this.registry],
    });
  }
}

/** gRPC's canonical code name, as grpc-go's Prometheus middleware labels it ("NotFound"). */
export function codeName(code: Code): string {
  return Code[code] ?? String(code);
}

/** Serves GET /metrics for one registry on its own HTTP port. */
export async function startMetricsServer(registry: Registry, host: string, port: number): Promise<{ port: number; server: Server }> {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found; try /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(err.message),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return { port: (server.address() as AddressInfo).port, server };
}
