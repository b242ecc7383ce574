import type { ServiceRouter } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { BlockserverContext } from "../context.js";
import { guarded, invalidArgument } from "../errors.js";
import { checkHash } from "../block-store.js";

export function blockRoutes(ctx: BlockserverContext) {
  return (router: ServiceRouter) =>
    router.service(BlockService, {
      putBlock: guarded("PutBlock", async (req) => {
        const alreadyStored = await ctx.store.put(Buffer.from(req.hash), req.data);
        return { alreadyStored, size: req.data.length };
      }),
      getBlock: guarded("GetBlock", async (req) => {
        return { data: await ctx.store.get(Buffer.from(req.hash)) };
      }),
      reserveBlocks: guarded("ReserveBlocks", async (req) => {
        const hashes = req.hashes.map((h) => Buffer.from(h));
        hashes.forEach(checkHash);
        const lease = req.leaseSeconds || ctx.config.gc.reserveLeaseSeconds;
        return { present: await ctx.index.reserve(hashes, lease) };
      }),
      adjustReferences: guarded("AdjustReferences", async (req) => {
        if (!req.source || req.source.length > 64) throw invalidArgument("source must be 1 to 64 characters, e.g. \"meta-shard-2\"");
        for (const c of req.changes) {
          checkHash(Buffer.from(c.hash));
          if (c.delta === 0) throw invalidArgument(`change ${c.sequence} has delta 0`);
        }
        const { applied, unknown } = await ctx.index.adjustReferences(
          req.source, req.changes.map((c) => ({ sequence: c.sequence, hash: Buffer.from(c.hash), delta: c.delta })),
        );
        if (unknown.length > 0) {
          ctx.metrics.unknownReferences.inc(unknown.length);
          ctx.logger.error({ source: req.source, blocks: unknown.map((h) => h.toString("hex")) }, "reference changes name blocks the index does not hold");
        }
        return { applied };
      }),
      hasBlocks: guarded("HasBlocks", async (req) => {
        return { present: await ctx.store.has(req.hashes.map((h) => Buffer.from(h))) };
      }),
    });
}
