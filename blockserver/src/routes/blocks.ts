import type { HandlerContext } from "@connectrpc/connect";
import { grantRefusal, permissionDenied, principalKey, type BlockGrants, type ServiceRouter } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { BlockserverContext } from "../context.js";
import { guarded, invalidArgument } from "../errors.js";
import { checkHash } from "../block-store.js";

/** The user making a call, or undefined for a service credential (the metaserver, the operator). */
/** HasBlocks costs one metadata unit per this many hashes: a call's cost follows its work. */
export const HASHES_PER_UNIT = 100;

function userOf(hctx: HandlerContext): string | undefined {
  const p = hctx.values.get(principalKey);
  return p?.kind === "user" ? p.userId : undefined;
}

/**
 * A user reads a block only with a grant for it (see proto/src/runtime/block-grants.ts): refused
 * before the block is looked up, so the answer says nothing about whether it exists.
 */
function requireGrant(grants: BlockGrants, user: string, hash: Buffer, grant: Uint8Array): void {
  const check = grants.check(user, hash, grant);
  if (check !== "ok") throw permissionDenied(grantRefusal(check, hash.toString("hex")));
}

export function blockRoutes(ctx: BlockserverContext) {
  const { grants } = ctx;
  return (router: ServiceRouter) =>
    router.service(BlockService, {
      putBlock: guarded("PutBlock", async (req, hctx) => {
        const hash = Buffer.from(req.hash);
        const user = userOf(hctx);
        if (user !== undefined) await ctx.limits.charge(user, "blocks", req.data.length);
        const alreadyStored = await ctx.store.put(hash, req.data);
        if (user === undefined) return { alreadyStored, size: req.data.length };
        // The bytes were verified against the hash: the uploader holds the block (remembered for
        // the reservation window, so an interrupted upload need not send it again). Whether
        // someone else stored it first is not the uploader's business.
        await ctx.index.recordUpload(hash, BigInt(user));
        return { alreadyStored: false, size: req.data.length, grant: grants.issue(user, hash) };
      }),
      getBlock: guarded("GetBlock", async (req, hctx) => {
        const hash = Buffer.from(req.hash);
        checkHash(hash);
        const user = userOf(hctx);
        if (user === undefined) return { data: await ctx.store.get(hash) };
        requireGrant(grants, user, hash, req.grant);
        const data = await ctx.store.get(hash);
        await ctx.limits.charge(user, "blocks", data.length);
        return { data };
      }),
      reserveBlocks: guarded("ReserveBlocks", async (req) => {
        const hashes = req.hashes.map((h) => Buffer.from(h));
        hashes.forEach(checkHash);
        const lease = req.leaseSeconds || ctx.config.gc.reserveLeaseSeconds;
        // reserve() leaves every present block reserved for at least half the lease from now.
        return { present: await ctx.index.reserve(hashes, lease), reservedSeconds: Math.floor(lease / 2) };
      }),
      adjustReferences: guarded("AdjustReferences", async (req) => {
        // Taken before anything is applied: the sender reads its outbox for a later batch only after
        // this answer, so a claim of this time there covers everything committed before it.
        const serverTimeMs = BigInt(Date.now());
        if (!req.source || req.source.length > 64) throw invalidArgument("source must be 1 to 64 characters, e.g. \"meta-shard-2\"");
        if (req.deliveredThroughMs < 0n || req.deliveredThroughMs > serverTimeMs + BigInt(ctx.config.gc.clockSkewMs)) {
          throw invalidArgument(`delivered_through_ms ${req.deliveredThroughMs} must be a server_time_ms this blockserver answered earlier`);
        }
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
        // Recorded after the changes are applied: the claim covers this batch too.
        await ctx.index.recordSourceReport(req.source, req.deliveredThroughMs, req.oldestPendingSeconds);
        return { applied, serverTimeMs };
      }),
      hasBlocks: guarded("HasBlocks", async (req, hctx) => {
        const hashes = req.hashes.map((h) => Buffer.from(h));
        const user = userOf(hctx);
        if (user === undefined) return { present: await ctx.store.has(hashes) };
        if (req.grants.length !== 0 && req.grants.length !== hashes.length) {
          throw invalidArgument(`grants must be empty or one per hash: ${req.grants.length} grants for ${hashes.length} hashes`);
        }
        hashes.forEach(checkHash);
        // A call costs one metadata unit per HASHES_PER_UNIT hashes it asks about (the first was taken on admission).
        await ctx.limits.charge(user, "metadata", Math.ceil(hashes.length / HASHES_PER_UNIT) - 1);
        // Present to this caller: live and granted, or live and sent by the caller lately.
        const granted = hashes.map((h, i) => grants.check(user, h, req.grants[i]) === "ok");
        const [live, uploaded] = await Promise.all([
          granted.some(Boolean) ? ctx.store.has(hashes.filter((_, i) => granted[i])) : [],
          granted.every(Boolean) ? [] : ctx.index.liveUploadedBy(hashes.filter((_, i) => !granted[i]), BigInt(user), ctx.config.gc.reserveLeaseSeconds),
        ]);
        let g = 0;
        let u = 0;
        const present = granted.map((isGranted) => (isGranted ? live[g++] : uploaded[u++]));
        // A grant is never extended here: only the metaserver, which checks that the caller may still
        // read a file holding the block, issues fresh ones. A valid grant comes back as it was (a
        // removed member's access ends when the grants it holds expire); a block the caller sent
        // lately gets one, as PutBlock gave it (it has shown it holds the bytes).
        const expiry = grants.expiryNow();
        return {
          present,
          grants: present.map((p, i) => (!p ? new Uint8Array(0) : granted[i] ? req.grants[i] : grants.issue(user, hashes[i], expiry))),
        };
      }),
    });
}
