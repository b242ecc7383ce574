import { AccessTokens, servingTls, startRpcServer, tokenVerifier, type RpcServer } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { BlockserverContext } from "./context.js";
import { adminRoutes } from "./routes/admin.js";
import { blockRoutes } from "./routes/blocks.js";

export function startBlockserver(ctx: BlockserverContext): Promise<RpcServer> {
  return startRpcServer({
    name: "blockserver",
    host: ctx.config.host,
    port: ctx.config.port,
    webPort: ctx.config.webPort,
    metricsPort: ctx.config.metricsPort,
    services: [BlockService, BlockAdminService],
    routes: (router) => {
      blockRoutes(ctx)(router);
      adminRoutes(ctx)(router);
    },
    logger: ctx.logger,
    metrics: ctx.metrics,
    tls: servingTls(ctx.config.tls),
    rpcMetrics: ctx.config.rpcMetrics,
    auth: {
      verify: tokenVerifier(ctx.config.serviceCredentials, new AccessTokens(ctx.config.tokenKeys)),
      // Users move block bytes; only services and operators change what references them.
      serviceOnly: new Set([BlockAdminService.typeName, `${BlockService.typeName}/ReserveBlocks`, `${BlockService.typeName}/AdjustReferences`]),
      servicePermissions: { metaserver: METASERVER_CALLS },
      limits: ctx.limits,
    },
  });
}

/**
 * What the metaserver's credential may call here: reserving and counting references for commits,
 * the reference reconciler, the verifier's inspection, and reading a block for a share link (it
 * checked the link). Not scrub, repair, node states or GC: those are the operator's.
 */
const METASERVER_CALLS = [
  `${BlockService.typeName}/ReserveBlocks`,
  `${BlockService.typeName}/AdjustReferences`,
  `${BlockService.typeName}/GetBlock`,
  `${BlockAdminService.typeName}/InspectBlocks`,
  `${BlockAdminService.typeName}/ListReferenceCounts`,
  `${BlockAdminService.typeName}/SetReferenceCounts`,
];
