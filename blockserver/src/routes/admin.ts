import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { BlockAdminService, NodeState, ScrubStatusSchema, type ScrubStatus } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { BlockserverContext } from "../context.js";
import { Code, ConnectError, toConnectError } from "../errors.js";
import type { ScrubPassStatus } from "../scrub/scrubber.js";

export function adminRoutes(ctx: BlockserverContext) {
  return (router: ConnectRouter) =>
    router.service(BlockAdminService, {
      getScrubStatus() {
        return { status: toProto(ctx.scrubber.status) };
      },
      async runScrub(req) {
        const pass = ctx.scrubber.runPass(req.unthrottled);
        if (req.wait) await pass;
        return { status: toProto(ctx.scrubber.status) };
      },
      async setNodeState(req) {
        if (!ctx.nodes.get(req.node)) {
          throw new ConnectError(`unknown storage node "${req.node}"; known: ${ctx.nodes.names.join(", ")}`, Code.NotFound);
        }
        if (req.state !== NodeState.ACTIVE && req.state !== NodeState.DEAD) {
          throw new ConnectError("state must be NODE_STATE_ACTIVE or NODE_STATE_DEAD", Code.InvalidArgument);
        }
        try {
          await ctx.index.setNodeState(req.node, req.state === NodeState.DEAD ? "dead" : "active");
          await ctx.refreshNodeStates();
        } catch (err) {
          throw toConnectError(err, "SetNodeState");
        }
        ctx.logger.warn({ node: req.node, state: NodeState[req.state] }, "storage node state set by operator");
        return {};
      },
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
