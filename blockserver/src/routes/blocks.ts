import type { ConnectRouter } from "@connectrpc/connect";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { BlockserverContext } from "../context.js";
import { toConnectError } from "../errors.js";

export function blockRoutes(ctx: BlockserverContext) {
  return (router: ConnectRouter) =>
    router.service(BlockService, {
      async putBlock(req) {
        try {
          const alreadyStored = await ctx.store.put(Buffer.from(req.hash), req.data);
          return { alreadyStored, size: req.data.length };
        } catch (err) {
          throw toConnectError(err, "PutBlock");
        }
      },
      async getBlock(req) {
        try {
          return { data: await ctx.store.get(Buffer.from(req.hash)) };
        } catch (err) {
          throw toConnectError(err, "GetBlock");
        }
      },
      async hasBlocks(req) {
        try {
          return { present: await ctx.store.has(req.hashes.map((h) => Buffer.from(h))) };
        } catch (err) {
          throw toConnectError(err, "HasBlocks");
        }
      },
    });
}
