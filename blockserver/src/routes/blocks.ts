import type { ConnectRouter } from "@connectrpc/connect";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { BlockserverContext } from "../context.js";
import { invalidArgument, toConnectError } from "../errors.js";
import { checkHash } from "../block-store.js";

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
      async reserveBlocks(req) {
        try {
          const hashes = req.hashes.map((h) => Buffer.from(h));
          hashes.forEach(checkHash);
          const lease = req.leaseSeconds || ctx.config.gc.reserveLeaseSeconds;
          return { present: await ctx.index.reserve(hashes, lease) };
        } catch (err) {
          throw toConnectError(err, "ReserveBlocks");
        }
      },
      async adjustReferences(req) {
        if (!req.source || req.source.length > 64) throw invalidArgument("source must be 1 to 64 characters, e.g. \"meta-shard-2\"");
        for (const c of req.changes) {
          checkHash(Buffer.from(c.hash));
          if (c.delta === 0) throw invalidArgument(`change ${c.sequence} has delta 0`);
        }
        try {
          const { applied, unknown } = await ctx.index.adjustReferences(
            req.source, req.changes.map((c) => ({ sequence: c.sequence, hash: Buffer.from(c.hash), delta: c.delta })),
          );
          if (unknown.length > 0) {
            ctx.metrics.unknownReferences.inc(unknown.length);
            ctx.logger.error({ source: req.source, blocks: unknown.map((h) => h.toString("hex")) }, "reference changes name blocks the index does not hold");
          }
          return { applied };
        } catch (err) {
          throw toConnectError(err, "AdjustReferences");
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
