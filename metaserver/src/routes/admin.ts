import type { ServiceRouter } from "@satchel/proto";
import { MetaAdminService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { MetaserverContext } from "../context.js";
import { moveNamespace } from "../store/namespace-mover.js";
import { invalidArgument } from "../errors.js";
import { guarded } from "./caller.js";

/** Users one ListMemberships may ask about. */
const MEMBERSHIPS_PER_CALL = 1000;

export function adminRoutes(ctx: MetaserverContext) {
  return (router: ServiceRouter) =>
    router.service(MetaAdminService, {
      reconcileReferences: guarded("ReconcileReferences", async () => {
        const r = await ctx.reconciler.run();
        return { blocksChecked: BigInt(r.blocksChecked), blocksDrifted: BigInt(r.blocksDrifted), totalDrift: BigInt(r.totalDrift) };
      }),
      moveNamespace: guarded("MoveNamespace", async (req) => {
        const r = await moveNamespace(ctx.shards, ctx.placement, ctx.logger, req.namespaceId, req.targetShardId, (ns) => ctx.publisher.shardMoved(ns));
        return { sourceShardId: r.sourceShardId, targetShardId: r.targetShardId, rowsCopied: BigInt(r.rowsCopied), writesHeldMs: r.writesHeldMs };
      }),
      setQuota: guarded("SetQuota", async (req) => {
        await ctx.namespaces.setQuota(req.username, req.quotaBytes === 0n ? 0n : req.quotaBytes);
        ctx.quotas.forget();
        return {};
      }),
      prune: guarded("Prune", async () => {
        const r = await ctx.retention.run();
        ctx.relay.wake();
        return { versionsPruned: BigInt(r.versionsPruned), entriesPurged: BigInt(r.entriesPurged), journalEntriesCompacted: BigInt(r.journalCompacted) };
      }),
      listMemberships: guarded("ListMemberships", async (req) => {
        if (req.userIds.length > MEMBERSHIPS_PER_CALL) throw invalidArgument(`ask about at most ${MEMBERSHIPS_PER_CALL} users per call, not ${req.userIds.length}`);
        const of = await ctx.namespaces.membershipsOf(req.userIds);
        return { memberships: req.userIds.map((userId) => ({ userId, namespaceIds: of.get(userId) ?? [] })) };
      }),
      compactJournal: guarded("CompactJournal", async (req) => {
        return { entriesRemoved: BigInt(await ctx.journal.compactJournal(req.namespaceId, req.throughCursor)) };
      }),
      verify: guarded("Verify", async (req, hctx) => {
        const r = await ctx.verifier.run({ unthrottled: req.unthrottled, maxFilesListed: req.maxFilesListed, signal: hctx.signal });
        return {
          versionsChecked: BigInt(r.versionsChecked), blocksChecked: BigInt(r.blocksChecked), blocksUnreadable: BigInt(r.blocksUnreadable),
          blocksLost: BigInt(r.blocksLost), blocksBelowFullRedundancy: BigInt(r.blocksBelowFullRedundancy),
          referencesToMissingBlocks: BigInt(r.referencesToMissingBlocks), seconds: r.seconds, bytesRead: r.bytesRead,
          problemsNotListed: BigInt(r.problemsNotListed),
          problems: r.problems.map((p) => ({
            hash: p.hash, kind: p.kind, shardsGood: p.shardsGood, shardsTotal: p.shardsTotal, filesNotListed: BigInt(p.filesNotListed),
            files: p.files.map((f) => ({ namespaceId: f.namespaceId, path: f.path, revision: f.revision, owner: f.owner })),
          })),
        };
      }),
    });
}
