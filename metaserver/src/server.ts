import { devTokenVerifier, startRpcServer, type RpcServer } from "@satchel/proto";
import { MetaAdminService, MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { MetaserverContext } from "./context.js";
import { adminRoutes } from "./routes/admin.js";
import { fileRoutes } from "./routes/files.js";

export function startMetaserver(ctx: MetaserverContext): Promise<RpcServer> {
  return startRpcServer({
    name: "metaserver",
    host: ctx.config.host,
    port: ctx.config.port,
    metricsPort: ctx.config.metricsPort,
    services: [MetaService, MetaAdminService],
    routes: (router) => {
      fileRoutes(ctx)(router);
      adminRoutes(ctx)(router);
    },
    logger: ctx.logger,
    metrics: ctx.metrics,
    verifyToken: devTokenVerifier(ctx.config.devToken, "user"),
  });
}
