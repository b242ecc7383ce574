import type { HandlerContext } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  BatchResultSchema, type BatchChange as ProtoChange, type BatchResult, type CommitBatchRequest,
} from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { reserveLive } from "../blocks/reservations.js";
import type { MetaserverContext } from "../context.js";
import { Code, ConnectError, failedPrecondition, invalidArgument, toStatus } from "../errors.js";
import type { BatchChange, BatchOutcome } from "../store/files.js";
import { ROOT } from "../tree/paths.js";
import { callerOf, guarded } from "./caller.js";
import { checkCommit, granterFor, refuseMountRoot, refuseMountsInside, toMetadata, unprovenBlocks } from "./files.js";
import { locate, type Located } from "./located.js";

/** Changes one CommitBatch may carry (Dropbox's upload_session/finish_batch takes 1,000). */
export const MAX_BATCH_CHANGES = 1000;

/** A change that passed the checks a single call makes before its transaction, with where it lands. */
interface Ready {
  index: number;
  at: Located;
  change: BatchChange;
  /** A commit's distinct block hashes (reserved together for the whole batch). */
  hashes: Uint8Array[];
}

/**
 * CommitBatch: the single calls' checks per change (each refusal is that change's result), one
 * reservation for every commit's blocks, then one transaction per namespace in which the changes
 * apply in order, each rolled back alone when refused.
 */
export function batchRoutes(ctx: MetaserverContext) {
  const refused = (err: unknown, hctx: HandlerContext): BatchResult => {
    const status = toStatus(err, "CommitBatch", hctx);
    if (status.code === Code.Internal) ctx.logger.error({ err: status.cause instanceof Error ? status.cause.message : String(status.cause) }, "a batch change failed");
    return create(BatchResultSchema, { code: status.code, message: status.rawMessage });
  };

  /** What a change is in its namespace, after the checks its single call makes first. */
  const prepare = async (c: ProtoChange, hctx: HandlerContext): Promise<{ at: Located; change: BatchChange; hashes: Uint8Array[]; unproven?: Uint8Array[] }> => {
    switch (c.change.case) {
      case "commit": {
        const req = c.change.value;
        const at = await locate(ctx, hctx, req.path, "write");
        refuseMountRoot(at, "commit files inside it");
        const hashes = checkCommit(req);
        // A hash is not a capability: each block must be one the caller has shown it holds.
        const unproven = await unprovenBlocks(ctx, at, req.blocks, req.parentRevision);
        const change: BatchChange = {
          kind: "commit",
          input: {
            namespaceId: at.mount.namespaceId, path: at.inner, blocks: req.blocks, size: req.size,
            parentRevision: req.parentRevision, requestId: req.requestId, deviceName: at.caller.deviceName,
          },
        };
        return { at, change, hashes, unproven };
      }
      case "createFolder": {
        const at = await locate(ctx, hctx, c.change.value.path, "write");
        refuseMountRoot(at, "it exists already");
        return { at, change: { kind: "mkdir", path: at.inner }, hashes: [] };
      }
      case "delete": {
        const req = c.change.value;
        const at = await locate(ctx, hctx, req.path, "write");
        refuseMountRoot(at, at.mount.role === "owner" ? "unshare it or delete what is in it" : "leave it with LeaveSharedFolder");
        refuseMountsInside(at);
        return { at, change: { kind: "delete", path: at.inner, parentRevision: req.parentRevision, seenCursor: req.seenCursor }, hashes: [] };
      }
      case "move": {
        const req = c.change.value;
        const from = await locate(ctx, hctx, req.fromPath, "write");
        const to = await locate(ctx, hctx, req.toPath, "write");
        if (from.path === ROOT || to.path === ROOT) throw invalidArgument("the root folder cannot be moved or replaced");
        if (from.inner === ROOT && from.mount.path !== ROOT) throw failedPrecondition(`"${from.path}" is a shared folder: rename it with Move, not in a batch`);
        if (from.mount.namespaceId !== to.mount.namespaceId || to.inner === ROOT) {
          throw failedPrecondition(`"${from.path}" and "${to.path}" are in different shared folders: copy, then delete the original`);
        }
        refuseMountsInside(from);
        return { at: from, change: { kind: "move", from: from.inner, to: to.inner }, hashes: [] };
      }
      default:
        throw invalidArgument("a batch change names no change: set commit, create_folder, delete or move");
    }
  };

  /** The response of a change that applied, as its single call gives it. */
  const answer = (outcome: BatchOutcome, at: Located, hctx: HandlerContext): BatchResult => {
    if (!outcome.ok) return refused(outcome.error, hctx);
    const v = outcome.value;
    const grant = granterFor(ctx, at.caller);
    switch (v.kind) {
      case "commit":
        if (v.conflict) ctx.metaMetrics.conflicts.inc();
        return create(BatchResultSchema, { result: { case: "commit", value: { missingBlocks: [], file: toMetadata(v.file, at.mount, grant), conflict: v.conflict } } });
      case "mkdir":
        return create(BatchResultSchema, { result: { case: "createFolder", value: { folder: toMetadata(v.folder, at.mount) } } });
      case "delete":
        return create(BatchResultSchema, {
          result: { case: "delete", value: { entry: toMetadata(v.entry, at.mount, grant), entriesKept: BigInt(v.entry.kept), entriesDeleted: BigInt(v.entry.removed) } },
        });
      case "move":
        return create(BatchResultSchema, { result: { case: "move", value: { entry: toMetadata(v.entry, at.mount, grant), descendantsMoved: BigInt(v.descendants) } } });
    }
  };

  return {
    commitBatch: guarded("CommitBatch", async (req: CommitBatchRequest, hctx: HandlerContext) => {
      const caller = callerOf(hctx);
      const n = req.changes.length;
      if (n === 0) throw invalidArgument("a batch needs at least one change");
      if (n > MAX_BATCH_CHANGES) throw invalidArgument(`a batch carries at most ${MAX_BATCH_CHANGES} changes, got ${n}: split it`);
      // Rate limits count changes, not calls (admission took the first).
      await ctx.limits.charge(caller.userId.toString(), "commits", n - 1);
      const results: (BatchResult | undefined)[] = new Array(n);
      const ready: Ready[] = [];
      for (const [index, c] of req.changes.entries()) {
        try {
          const { at, change, hashes, unproven } = await prepare(c, hctx);
          if (unproven && unproven.length > 0) {
            results[index] = create(BatchResultSchema, { result: { case: "commit", value: { missingBlocks: unproven } } });
            continue;
          }
          ready.push({ index, at, change, hashes });
        } catch (err) {
          if (!(err instanceof ConnectError)) throw err;
          results[index] = refused(err, hctx);
        }
      }
      // One reservation for every commit of the batch (see CommitFile: live blocks only, and not
      // collected before the references relayed after the commit reach the blockserver).
      const present = await reserveLive(ctx.blocks, ctx.recentReservations, ctx.metaMetrics.blockReservations, [...new Map(ready.flatMap((r) => r.hashes.map((h): [string, Uint8Array] => [Buffer.from(h).toString("hex"), h]))).values()], hctx.signal);
      const byNamespace = new Map<bigint, Ready[]>();
      for (const r of ready) {
        const missing = r.hashes.filter((h) => !present.has(Buffer.from(h).toString("hex")));
        if (missing.length > 0) {
          results[r.index] = create(BatchResultSchema, { result: { case: "commit", value: { missingBlocks: missing } } });
          continue;
        }
        const ns = r.at.mount.namespaceId;
        byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), r]);
      }
      let wrote = false;
      for (const [ns, group] of byNamespace) {
        try {
          const outcomes = await ctx.files.batch(ns, group.map((r) => r.change));
          for (const [i, r] of group.entries()) {
            const o = outcomes[i];
            if (!o.ok && o.error.code === Code.ResourceExhausted) ctx.metaMetrics.quotaRefusals.inc();
            results[r.index] = answer(o, r.at, hctx);
          }
          wrote ||= outcomes.some((o) => o.ok);
        } catch (err) {
          // The namespace's shard failed: none of its changes was written (retry them).
          for (const r of group) results[r.index] = refused(err, hctx);
        }
      }
      if (wrote) ctx.relay.wake();
      return { results: results.map((r) => r ?? refused(new ConnectError("the change was not tried", Code.Internal), hctx)) };
    }),
  };
}
