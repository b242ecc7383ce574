import type { ConnectRouter } from "@connectrpc/connect";
import { MetaAdminService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { MetaserverContext } from "../context.js";
import { toConnectError } from "../errors.js";
import { reconcileReferences } from "../journal/reference-reconciler.js";

export function adminRoutes(ctx: MetaserverContext) {
  return (router: ConnectRouter) =>
    router.service(MetaAdminService, {
      async reconcileReferences() {
        try {
          const r = await reconcileReferences(ctx.shards, ctx.relay, ctx.blockAdmin, ctx.logger);
          return { blocksChecked: BigInt(r.blocksChecked), blocksDrifted: BigInt(r.blocksDrifted), totalDrift: BigInt(r.totalDrift) };
        } catch (err) {
          throw toConnectError(err, "ReconcileReferences");
        }
      },
    });
}
