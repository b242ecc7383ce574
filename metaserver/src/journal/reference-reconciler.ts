import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type { Logger } from "@satchel/proto";
import { BlockReferenceCountSchema, type BlockAdminService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { ReferenceOutbox } from "../store/reference-outbox.js";
import type { ReferenceRelay } from "./reference-relay.js";

export interface ReconcileReport {
  blocksChecked: number;
  blocksDrifted: number;
  totalDrift: number;
}

/**
 * Mark and sweep for block references. With the relay held, every shard is read in one consistent
 * snapshot: each file version counts once for each distinct block it holds, minus the changes of
 * that snapshot still waiting in the outbox (the blockserver has not seen them). Blocks the
 * blockserver counts differently are corrected; blocks it counts that no version holds go to zero
 * (and so to garbage collection after their grace period).
 */
export async function reconcileReferences(
  outbox: ReferenceOutbox, relay: ReferenceRelay, admin: Client<typeof BlockAdminService>, logger: Logger,
): Promise<ReconcileReport> {
  return relay.pause(async () => {
    await relay.drain();
    const expected = new Map<string, number>();
    for (const id of outbox.shardIds) await outbox.referencesOn(id, expected);
    const report: ReconcileReport = { blocksChecked: 0, blocksDrifted: 0, totalDrift: 0 };
    const fixes: { hash: Buffer; refCount: number }[] = [];
    const seen = new Set<string>();
    let pageToken = "";
    do {
      const page = await admin.listReferenceCounts({ pageToken, pageSize: 2000 });
      for (const c of page.counts) {
        const hex = Buffer.from(c.hash).toString("hex");
        seen.add(hex);
        report.blocksChecked++;
        const want = expected.get(hex) ?? 0;
        if (Number(c.refCount) !== want && c.state !== "deleting") {
          report.blocksDrifted++;
          report.totalDrift += Math.abs(Number(c.refCount) - want);
          fixes.push({ hash: Buffer.from(c.hash), refCount: want });
        }
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    for (const [hex, n] of expected) {
      if (n > 0 && !seen.has(hex)) logger.error({ block: hex, references: n }, "file versions reference a block the blockserver does not hold");
    }
    for (let i = 0; i < fixes.length; i += 500) {
      await admin.setReferenceCounts({
        counts: fixes.slice(i, i + 500).map((f) => create(BlockReferenceCountSchema, { hash: f.hash, found: true, refCount: BigInt(f.refCount) })),
      });
    }
    logger.info(report, "reference reconciliation finished");
    return report;
  });
}
