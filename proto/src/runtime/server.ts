import { setMaxListeners } from "node:events";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { file_grpc_reflection_v1alpha_reflection } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { CallPipeline } from "./call-pipeline.js";
import { createGrpcServer, ServiceRegistry, widenWindows, type ServiceRouter } from "./grpc-server.js";
import { HealthStatus, ServingStatus } from "./health.js";
import { clientAddressKey, pipelineInterceptor, type AuthOptions } from "./interceptors.js";
import type { Logger } from "./logger.js";
import { HTTP2_SESSION_MEMORY_MB, HTTP2_WINDOW_BYTES, MAX_MESSAGE_BYTES } from "./limits.js";
import { ServiceMetrics, startMetricsServer } from "./metrics.js";
import { registerReflection } from "./reflection.js";
import type { ServingTls } from "./tls.js";

export interface RpcServerOptions {
  /** Service process name, used in metric names and logs ("blockserver"). */
  name: string;
  host: string;
  /** gRPC (HTTP/2), served by grpc-js. */
  port: number;
  /** Connect and gRPC-Web (HTTP/1.1, for browsers), served by connect-node from the same handlers; absent: not served. */
  webPort?: number;
  metricsPort: number;
  /** The application services served, for health checking and reflection. */
  services: DescService[];
  /** Set false to leave out the RPC metrics (only to measure what they cost). */
  rpcMetrics?: boolean;
  /** On close, how long streams get between the drain signal and shutdown (0: none). */
  drainMs?: number;
  /** Registers the application's handlers. */
  routes: (router: ServiceRouter) => void;
  auth: AuthOptions;
  logger: Logger;
  metrics?: ServiceMetrics;
  /** The certificate gRPC and the web port serve with; absent: plaintext (local development only). */
  tls?: ServingTls;
}

export interface RpcServer {
  readonly port: number;
  /** The Connect and gRPC-Web port, when served. */
  readonly webPort?: number;
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
 * Starts a Satchel service's RPC servers: gRPC on grpc-js (the fast runtime: every stock gRPC
 * client and tool), and, when asked, Connect and gRPC-Web on connect-node on a port of their own,
 * both from the same handlers and through the same call pipeline (request ids, metrics, logs,
 * authentication), with health checking and reflection.
 */
export async function startRpcServer(opts: RpcServerOptions): Promise<RpcServer> {
  const metrics = opts.metrics ?? new ServiceMetrics(opts.name);
  const health = new HealthStatus(opts.services.map((s) => s.typeName));
  const shutdown = new AbortController();
  const drain = new AbortController();
  // Every in-flight call may listen to the shutdown signal; thousands at once are normal, not a leak.
  setMaxListeners(0, shutdown.signal);
  setMaxListeners(0, drain.signal);
  const files: DescFile[] = [...opts.services.map((s) => s.file), file_grpc_health_v1_health, file_grpc_reflection_v1_reflection, file_grpc_reflection_v1alpha_reflection];
  const registry = new ServiceRegistry();
  health.register(registry);
  registerReflection(registry, files, [
    ...opts.services.map((s) => s.typeName),
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
  ]);
  opts.routes(registry);
  const pipeline = new CallPipeline({ logger: opts.logger, metrics: opts.rpcMetrics === false ? undefined : metrics, auth: opts.auth });

  const server = createGrpcServer({
    services: registry, pipeline, shutdown: shutdown.signal,
    maxMessageBytes: MAX_MESSAGE_BYTES, windowBytes: HTTP2_WINDOW_BYTES, sessionMemoryMb: HTTP2_SESSION_MEMORY_MB,
  });
  const port = await new Promise<number>((resolve, reject) => {
    const credentials = opts.tls
      ? grpc.ServerCredentials.createSsl(null, [{ private_key: opts.tls.key, cert_chain: opts.tls.cert }], false)
      : grpc.ServerCredentials.createInsecure();
    server.bindAsync(`${opts.host}:${opts.port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  if (!widenWindows(server, HTTP2_WINDOW_BYTES)) opts.logger.warn("could not widen the HTTP/2 windows of the gRPC server (grpc-js changed?): large messages will cross more slowly");

  const web = opts.webPort === undefined ? undefined : await startWebServer(opts, registry, pipeline, shutdown.signal);
  const metricsServer = await startMetricsServer(metrics.registry, opts.host, opts.metricsPort);
  health.setAll(ServingStatus.SERVING);
  opts.logger.info({ port, webPort: web?.port, metricsPort: metricsServer.port }, `${opts.name} serving`);

  let closing: Promise<void> | undefined;
  return {
    port,
    webPort: web?.port,
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
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        await Promise.all([
          new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
          web && new Promise<void>((resolve) => {
            web.server.close(() => resolve());
            web.server.closeIdleConnections();
          }),
        ]);
        clearTimeout(timer);
        web?.server.closeAllConnections();
        await new Promise<void>((resolve) => metricsServer.server.close(() => resolve()));
        opts.logger.info(`${opts.name} stopped`);
      })();
      return closing;
    },
  };
}

/** Connect and gRPC-Web over HTTP/1.1 (HTTPS unless in plaintext), from the registered handlers. */
async function startWebServer(opts: RpcServerOptions, registry: ServiceRegistry, pipeline: CallPipeline, shutdown: AbortSignal): Promise<{ port: number; server: http.Server | https.Server }> {
  const handler = connectNodeAdapter({
    routes: (router) => {
      for (const { desc, impl } of registry.services) router.service(desc, impl);
    },
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    // No gzip on the wire: blocks are mostly incompressible and gzip would cap a stream at tens of MB/s.
    acceptCompression: [],
    shutdownSignal: shutdown,
    interceptors: [pipelineInterceptor(pipeline)],
    contextValues: (req) => createContextValues().set(clientAddressKey, req.socket.remoteAddress ?? ""),
  });
  const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.webPort, opts.host, () => resolve());
  });
  return { port: (server.address() as AddressInfo).port, server };
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
