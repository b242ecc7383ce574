import type { ServiceRouter } from "@satchel/proto";
import { create } from "@bufbuild/protobuf";
import { BlockAdminService, NodeState, ScrubStatusSchema, type ScrubStatus } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { BlockserverContext } from "../context.js";
import { guarded, invalidArgument, notFound } from "../errors.js";
import type { ScrubPassStatus } from "../scrub/scrubber.js";
import { checkHash } from "../block-store.js";
import { sweepOrphans } from "../gc/orphans.js";
import { inspectBlocks } from "../scrub/inspect.js";

export function adminRoutes(ctx: BlockserverContext) {
  return (router: ServiceRouter) =>
    router.service(BlockAdminService, {
      getScrubStatus() {
        return { status: toProto(ctx.scrubber.status) };
      },
      runScrub: guarded("RunScrub", async (req) => {
        const pass = ctx.scrubber.runPass(req.unthrottled);
        // Then every copy of every volume segment, and the repair of what that finds.
        const volumes = pass.then(() => ctx.volumeRepairer.scrubPass()).then(() => ctx.volumeRepairer.kick());
        volumes.catch((err: Error) => ctx.logger.warn({ err: err.message }, "volume scrub pass failed"));
        if (!req.wait) return { status: toProto(ctx.scrubber.status) };
        await volumes.catch(() => undefined);
        return { status: toProto(await pass) };
      }),
      runGarbageCollection: guarded("RunGarbageCollection", async (req) => {
        const result = await ctx.collector.run(req.graceSeconds ?? ctx.config.gc.graceSeconds);
        const orphans = req.sweepOrphans
          ? await sweepOrphans(ctx.nodes, ctx.index, ctx.repairer, ctx.metrics, ctx.logger, req.orphanMinAgeSeconds ?? ctx.config.gc.orphanMinAgeSeconds)
          : { removed: 0 };
        return {
          candidates: BigInt(result.candidates), blocksDeleted: BigInt(result.blocksDeleted),
          bytesReclaimed: BigInt(result.bytesReclaimed), orphansRemoved: BigInt(orphans.removed),
          paused: result.paused, awaitingRelay: BigInt(result.awaitingRelay), awaitingNodes: BigInt(result.awaitingNodes),
        };
      }),
      getReferenceCounts: guarded("GetReferenceCounts", async (req) => {
        const hashes = req.hashes.map((h) => Buffer.from(h));
        hashes.forEach(checkHash);
        const counts = await ctx.index.referenceCounts(hashes);
        return {
          counts: hashes.map((h) => {
            const c = counts.get(h.toString("hex"));
            return { hash: h, found: Boolean(c), refCount: BigInt(c?.refCount ?? 0), state: c?.state ?? "" };
          }),
        };
      }),
      listReferenceCounts: guarded("ListReferenceCounts", async (req) => {
        // The token is "<index shard>:<last hash hex>".
        let shard = 0;
        let after = Buffer.alloc(32);
        if (req.pageToken) {
          const m = /^(\d+):([0-9a-f]{64})$/.exec(req.pageToken);
          if (!m) throw invalidArgument("page_token is malformed: pass next_page_token unchanged");
          shard = Number(m[1]);
          after = Buffer.from(m[2], "hex");
        }
        const limit = Math.min(req.pageSize || 1000, 5000);
        for (; shard < ctx.index.shardCount; shard++, after = Buffer.alloc(32)) {
          const rows = await ctx.index.listReferenceCounts(shard, after, limit);
          if (rows.length === 0) continue;
          const last = rows[rows.length - 1];
          const more = rows.length === limit || shard + 1 < ctx.index.shardCount;
          return {
            counts: rows.map((r) => ({ hash: r.hash, found: true, refCount: BigInt(r.refCount), state: r.state })),
            nextPageToken: more ? (rows.length === limit ? `${shard}:${last.hash.toString("hex")}` : `${shard + 1}:${"0".repeat(64)}`) : "",
          };
        }
        return { counts: [], nextPageToken: "" };
      }),
      setReferenceCounts: guarded("SetReferenceCounts", async (req) => {
        for (const c of req.counts) checkHash(Buffer.from(c.hash));
        for (const c of req.counts) await ctx.index.setReferenceCount(Buffer.from(c.hash), Number(c.refCount));
        return {};
      }),
      inspectBlocks: guarded("InspectBlocks", async (req) => {
        if (req.hashes.length > 1000) throw invalidArgument(`at most 1000 hashes per call, got ${req.hashes.length}`);
        const hashes = req.hashes.map((h) => Buffer.from(h));
        hashes.forEach(checkHash);
        return { blocks: await inspectBlocks(ctx, hashes, req.unthrottled) };
      }),
      setNodeState: guarded("SetNodeState", async (req) => {
        if (!ctx.nodes.get(req.node)) {
          throw notFound(`unknown storage node "${req.node}"; known: ${ctx.nodes.names.join(", ")}`);
        }
        if (req.state !== NodeState.ACTIVE && req.state !== NodeState.DEAD) {
          throw invalidArgument("state must be NODE_STATE_ACTIVE or NODE_STATE_DEAD");
        }
        await ctx.index.setNodeState(req.node, req.state === NodeState.DEAD ? "dead" : "active");
        await ctx.refreshNodeStates();
        ctx.logger.warn({ node: req.node, state: NodeState[req.state] }, "storage node state set by operator");
        return {};
      }),
    });
}

function toProto(s: ScrubPassStatus): ScrubStatus {
  return create(ScrubStatusSchema, {
    running: s.running,
    passesCompleted: BigInt(s.passesCompleted),
    blocksVerified: BigInt(s.blocksVerified),
    bytesVerified: BigInt(s.bytesVerified),
    blocksTotal: BigInt(s.blocksTotal),
    rateLimitBytesPerSecond: BigInt(s.rateLimit),
    rateBytesPerSecond: s.rate,
    shardsMissing: BigInt(s.shardsMissing),
    shardsCorrupt: BigInt(s.shardsCorrupt),
    shardsRepaired: BigInt(s.shardsRepaired),
    blocksLost: BigInt(s.blocksLost),
    lastPassFinishedUnix: BigInt(s.lastPassFinished),
    lastPassSeconds: s.lastPassSeconds,
  });
}
