import { create } from "@bufbuild/protobuf";
import { BlockInspectionSchema, type BlockInspection } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { BlockserverContext } from "../context.js";
import { Code, ConnectError } from "../errors.js";
import { blockVerdict } from "../quorum.js";

/**
 * The verifier's probe: every shard of each block read and verified, and a verdict per block.
 * It reports, it does not mutate; damage goes to the repair queue. Blocks are inspected one after
 * another at the scrub rate (unless unthrottled), yielding to client traffic like the scrubber.
 */
export async function inspectBlocks(ctx: BlockserverContext, hashes: Buffer[], unthrottled: boolean): Promise<BlockInspection[]> {
  const out: BlockInspection[] = [];
  const rate = ctx.config.scrub.rateBytesPerSecond;
  for (const hash of hashes) {
    const started = performance.now();
    const record = await ctx.index.get(hash);
    if (!record) {
      out.push(create(BlockInspectionSchema, { hash, found: false }));
      continue;
    }
    if (record.state !== "live") {
      out.push(create(BlockInspectionSchema, { hash, found: true, state: record.state, shardsTotal: record.shards.length }));
      continue;
    }
    if (record.packed) {
      // A packed block is one record in a volume segment: read it as a client would (verified).
      const outcome = await ctx.volumes.read(record).then(() => "readable" as const, (err: unknown) => (ConnectError.from(err).code === Code.DataLoss ? "lost" as const : "unavailable" as const));
      out.push(create(BlockInspectionSchema, {
        hash, found: true, state: record.state, readable: outcome === "readable", lost: outcome === "lost",
        bytesRead: BigInt(outcome === "readable" ? record.size : 0),
      }));
      continue;
    }
    const survey = await ctx.shards.survey(record);
    const verdict = blockVerdict(survey, record.dataShards, record.parityShards);
    const good = survey.filter((s) => s.status === "ok").length;
    const bytes = survey.reduce((n, s) => n + (s.bytes ?? 0), 0);
    if (good < survey.length) ctx.repairer.enqueue(hash, "verifier found missing, corrupt or unreachable shards");
    out.push(create(BlockInspectionSchema, {
      hash, found: true, state: record.state, shardsTotal: survey.length, shardsGood: good,
      shardsUnreachable: survey.filter((s) => s.status === "unreachable").length,
      shardsGone: survey.filter((s) => s.status === "gone").length,
      readable: verdict.kind === "readable", lost: verdict.kind === "lost",
      unreachableNodes: verdict.kind === "unavailable" ? verdict.unreachableNodes : [...new Set(survey.filter((s) => s.status === "unreachable").map((s) => s.node))],
      bytesRead: BigInt(bytes),
    }));
    if (!unthrottled && rate > 0) {
      const wait = (bytes / rate) * 1000 - (performance.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }
  return out;
}
