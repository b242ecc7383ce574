import { AccessTokens, servingTls, startRpcServer, tokenVerifier, type RpcServer } from "@satchel/proto";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import type { NotifyserverContext } from "./context.js";
import { subscribeRoutes } from "./routes/subscribe.js";

/** Time streams get on shutdown to tell their clients to reconnect elsewhere. */
const DRAIN_MS = 500;

export async function startNotifyserver(ctx: NotifyserverContext): Promise<RpcServer> {
  let server: RpcServer | undefined;
  const never = new AbortController().signal;
  server = await startRpcServer({
    name: "notifyserver",
    host: ctx.config.host,
    port: ctx.config.port,
    webPort: ctx.config.webPort,
    metricsPort: ctx.config.metricsPort,
    services: [NotifyService],
    routes: subscribeRoutes(ctx, { drain: () => server?.drainSignal ?? never }),
    logger: ctx.logger,
    metrics: ctx.metrics,
    drainMs: DRAIN_MS,
    tls: servingTls(ctx.config.tls),
    // No other service calls the notifyserver (the metaserver reaches it through Redis): only users and the operator.
    auth: { verify: tokenVerifier(ctx.config.serviceCredentials, new AccessTokens(ctx.config.tokenKeys)), limits: ctx.rateLimits, servicePermissions: {} },
  });
  return server;
}
