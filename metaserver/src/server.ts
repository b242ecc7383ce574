import { servingTls, startRpcServer, tokenVerifier, type RpcServer } from "@satchel/proto";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { MetaAdminService, MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { MetaserverContext } from "./context.js";
import { startLinkGateway } from "./links/gateway.js";
import { adminRoutes } from "./routes/admin.js";
import { authRoutes, PUBLIC_AUTH_METHODS } from "./routes/auth.js";
import { fileRoutes } from "./routes/files.js";

export async function startMetaserver(ctx: MetaserverContext): Promise<RpcServer> {
  const links = await startLinkGateway(ctx);
  const rpc = await startRpcServer({
    name: "metaserver",
    host: ctx.config.host,
    port: ctx.config.port,
    webPort: ctx.config.webPort,
    metricsPort: ctx.config.metricsPort,
    services: [MetaService, MetaAdminService, AuthService],
    routes: (router) => {
      fileRoutes(ctx)(router);
      adminRoutes(ctx)(router);
      authRoutes(ctx)(router);
    },
    logger: ctx.logger,
    metrics: ctx.metrics,
    tls: servingTls(ctx.config.tls),
    auth: {
      verify: tokenVerifier(ctx.config.serviceCredentials, ctx.accessTokens),
      publicMethods: new Set(PUBLIC_AUTH_METHODS),
      serviceOnly: new Set([MetaAdminService.typeName]),
      // The notifyserver asks who may watch what; no other service calls the metaserver.
      servicePermissions: { notifyserver: [`${MetaAdminService.typeName}/ListMemberships`] },
      limits: ctx.limits,
    },
  });
  return {
    ...rpc,
    close: async (graceMs?: number) => {
      links.close();
      await rpc.close(graceMs);
    },
  };
}
