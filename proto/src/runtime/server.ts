import { setMaxListeners } from "node:events";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { HealthStatus, ServingStatus } from "./health.js";
import { authInterceptor, requestContextInterceptor, type AuthOptions } from "./interceptors.js";
import type { Logger } from "./logger.js";
import { HTTP2_SESSION_MEMORY_MB, HTTP2_WINDOW_BYTES, MAX_MESSAGE_BYTES } from "./limits.js";
import { ServiceMetrics, startMetricsServer } from "./metrics.js";
import { registerReflection } from "./reflection.js";

export interface RpcServerOptions {
  /** Service process name, used in metric names and logs ("blockserver"). */
  name: string;
  host: string;
  port: number;
  metricsPort: number;
  /** The application services served, for health checking and reflection. */
  services: DescService[];
  /** Set false to leave out the RPC metrics interceptor (only to measure what it costs). */
  rpcMetrics?: boolean;
  /** On close, how long streams get between the drain signal and shutdown (0: none). */
  drainMs?: number;
  /** Registers the application's handlers. */
  routes: (router: ConnectRouter) => void;
  auth: AuthOptions;
  logger: Logger;
  metrics?: ServiceMetrics;
  /** Extra interceptors, run inside the shared ones (request id, metrics, auth). */
  interceptors?: Interceptor[];
}

export interface RpcServer {
  readonly port: number;
  readonly metricsPort: number;
  readonly health: HealthStatus;
  readonly metrics: ServiceMetrics;
  /** Aborted when the server begins to shut down; long-lived streams end on it. */
  readonly shutdownSignal: AbortSignal;
  /**
   * Aborted first, drainMs before shutdownSignal: long-lived streams say goodbye on it (tell the
   * client to reconnect elsewhere) and end cleanly while they still can.
   */
  readonly drainSignal: AbortSignal;
  close(graceMs?: number): Promise<void>;
}

/**
 * Starts one HTTP/2 server that speaks gRPC, gRPC-Web and Connect on one port, with health
 * checking, reflection, metrics, request ids and authentication wired the same way for every
 * Satchel service.
 */
export async function startRpcServer(opts: RpcServerOptions): Promise<RpcServer> {
  const metrics = opts.metrics ?? new ServiceMetrics(opts.name);
  const health = new HealthStatus(opts.services.map((s) => s.typeName));
  const shutdown = new AbortController();
  const drain = new AbortController();
  // Every in-flight call listens to the shutdown signal; thousands at once are normal, not a leak.
  setMaxListeners(0, shutdown.signal);
  setMaxListeners(0, drain.signal);
  const files: DescFile[] = [...opts.services.map((s) => s.file), file_grpc_health_v1_health, file_grpc_reflection_v1_reflection, file_grpc_reflection_v1alpha_reflection];
  const handler = connectNodeAdapter({
    routes: (router) => {
      health.register(router);
      registerReflection(router, files, [
        ...opts.services.map((s) => s.typeName),
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]);
      opts.routes(router);
    },
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    // No gzip on the wire: blocks are mostly incompressible and gzip would cap a stream at tens of
    // MB/s. Compression, where it pays, is the blockserver's per-block decision.
    acceptCompression: [],
    shutdownSignal: shutdown.signal,
    interceptors: [
      requestContextInterceptor(opts.logger),
      ...(opts.rpcMetrics === false ? [] : [metrics.interceptor()]),
      authInterceptor(opts.auth),
      ...(opts.interceptors ?? []),
    ],
  });
  const server = http2.createServer(
    { maxSessionMemory: HTTP2_SESSION_MEMORY_MB, settings: { initialWindowSize: HTTP2_WINDOW_BYTES } },
    handler,
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.setLocalWindowSize(HTTP2_WINDOW_BYTES);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const metricsServer = await startMetricsServer(metrics.registry, opts.host, opts.metricsPort);
  health.setAll(ServingStatus.SERVING);
  opts.logger.info({ port, metricsPort: metricsServer.port }, `${opts.name} serving`);

  let closing: Promise<void> | undefined;
  return {
    port,
    metricsPort: metricsServer.port,
    health,
    metrics,
    shutdownSignal: shutdown.signal,
    drainSignal: drain.signal,
    close(graceMs = 2000) {
      closing ??= (async () => {
        health.setAll(ServingStatus.NOT_SERVING);
        drain.abort();
        if (opts.drainMs) await new Promise((r) => setTimeout(r, opts.drainMs));
        shutdown.abort(new ConnectError("server is shutting down; reconnect and retry", Code.Unavailable));
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sessions) s.close();
        const timer = setTimeout(() => sessions.forEach((s) => s.destroy()), graceMs);
        await closed;
        clearTimeout(timer);
        await new Promise<void>((resolve) => metricsServer.server.close(() => resolve()));
        opts.logger.info(`${opts.name} stopped`);
      })();
      return closing;
    },
  };
}

/** Keeps a service process up until SIGTERM or SIGINT, then drains the server and closes its context. */
export function closeOnSignal(server: RpcServer, closeContext: () => Promise<void>): void {
  const shutdown = async () => {
    await server.close();
    await closeContext();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown());
  process.once("SIGINT", () => void shutdown());
}
