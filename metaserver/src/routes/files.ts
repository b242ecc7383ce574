import type { ServiceRouter } from "@satchel/proto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  FileMetadataSchema, JournalEntrySchema, MetaService, Operation, type CommitFileRequest, type FileMetadata, type JournalEntry,
} from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { reserveLive } from "../blocks/reservations.js";
import type { MetaserverContext } from "../context.js";
import { failedPrecondition, invalidArgument, notFound } from "../errors.js";
import type { FileRecord } from "../store/file-records.js";
import { outerPath, type Mount } from "../store/namespaces.js";
import { journalMountMove } from "../store/sharing.js";
import { parentOf, pathKey, ROOT } from "../tree/paths.js";
import { callerOf, guarded, type Caller } from "./caller.js";
import { locate, mountOf, ROLES, type Located } from "./located.js";
import { batchRoutes } from "./batch.js";
import { shareRoutes } from "./sharing.js";

const HASH_BYTES = 32;
const MAX_REQUEST_ID = 64;
const MAX_WAIT_NAMESPACES = 1000;

/**
 * Issues the caller's block grants for one response (one expiry for all of them). Every block
 * list shown to a user carries a grant per block: what lets it read them (see block-grants.ts).
 */
export type Granter = (hash: Uint8Array) => Uint8Array;

export function granterFor(ctx: Pick<MetaserverContext, "grants">, caller: Caller): Granter {
  const user = caller.userId.toString();
  const expiry = ctx.grants.expiryNow();
  return (hash) => ctx.grants.issue(user, hash, expiry);
}

export function toMetadata(f: FileRecord, mount: Pick<Mount, "path">, grant?: Granter): FileMetadata {
  const path = outerPath(mount, f.path);
  return create(FileMetadataSchema, {
    path,
    name: path === ROOT ? "" : path.slice(path.lastIndexOf("/") + 1),
    isFolder: f.isFolder,
    revision: f.revision,
    size: f.size,
    blocks: grant ? f.blocks.map((b) => ({ hash: b.hash, size: b.size, grant: grant(b.hash) })) : f.blocks.map((b) => ({ hash: b.hash, size: b.size })),
    modifiedTime: timestampFromDate(f.modifiedAt),
    namespaceId: f.namespaceId,
    cursor: f.cursor,
    isDeleted: f.deleted,
  });
}

const OPERATIONS = { put: Operation.PUT, mkdir: Operation.MKDIR, delete: Operation.DELETE, move: Operation.MOVE, mount: Operation.MOUNT };

/** The folder at the top of a mount is the namespace itself: it cannot be replaced or trashed. */
export function refuseMountRoot(at: Located, what: string): void {
  if (at.inner === ROOT) throw failedPrecondition(`"${at.path}" is ${at.mount.path === ROOT ? "your root folder" : "a shared folder"}: ${what}`);
}

/** Shared folders mounted inside a folder pin it: moving it would move other people's folders. */
export function refuseMountsInside(at: Located): void {
  const key = pathKey(at.path);
  const inside = at.mounts.find((m) => m.key !== ROOT && m.key.startsWith(`${key}/`));
  if (inside) throw failedPrecondition(`"${at.path}" contains the shared folder "${inside.path}": move that out first`);
}

/** Checks a commit's request as sent (INVALID_ARGUMENT); answers its distinct block hashes. */
export function checkCommit(req: Pick<CommitFileRequest, "requestId" | "blocks" | "size">): Uint8Array[] {
  if (req.requestId.length > MAX_REQUEST_ID) throw invalidArgument(`request_id is longer than ${MAX_REQUEST_ID} characters`);
  let total = 0n;
  for (const [i, b] of req.blocks.entries()) {
    if (b.hash.length !== HASH_BYTES) throw invalidArgument(`block ${i}: hash must be ${HASH_BYTES} bytes of SHA-256, got ${b.hash.length}`);
    if (b.size === 0) throw invalidArgument(`block ${i}: size must be positive`);
    total += BigInt(b.size);
  }
  if (total !== req.size) throw invalidArgument(`size ${req.size} does not equal the sum of the block sizes (${total})`);
  return [...new Map(req.blocks.map((b) => [Buffer.from(b.hash).toString("hex"), b.hash])).values()];
}

/**
 * The blocks of a commit the caller has not shown it holds: neither a valid grant of its own
 * nor in the parent revision it names (a version of this namespace, which it may read).
 * Checked before anything is reserved, so a guessed hash reveals nothing and claims nothing.
 */
export async function unprovenBlocks(
  ctx: Pick<MetaserverContext, "grants" | "files">, at: Located, blocks: { hash: Uint8Array; grant: Uint8Array }[], parentRevision: bigint,
): Promise<Uint8Array[]> {
  const user = at.caller.userId.toString();
  const unproven = new Map<string, Uint8Array>();
  for (const b of blocks) if (ctx.grants.check(user, b.hash, b.grant) !== "ok") unproven.set(Buffer.from(b.hash).toString("hex"), b.hash);
  if (unproven.size === 0) return [];
  const parent = parentRevision > 0n ? await ctx.files.version(at.mount.namespaceId, parentRevision) : undefined;
  for (const b of parent?.blocks ?? []) unproven.delete(Buffer.from(b.hash).toString("hex"));
  return [...unproven.values()];
}

/** The metadata of a folder that is a mount point in the caller's tree. */
export function mountPoint(m: Mount): FileMetadata {
  return create(FileMetadataSchema, { path: m.path, name: m.path.slice(m.path.lastIndexOf("/") + 1), isFolder: true, namespaceId: m.namespaceId });
}

export function fileRoutes(ctx: MetaserverContext) {
  return (router: ServiceRouter) => {
    router.service(MetaService, {
      commitFile: guarded("CommitFile", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "write");
        refuseMountRoot(at, "commit files inside it");
        const unique = checkCommit(req);
        // A hash is not a capability: each block must be one the caller has shown it holds.
        const unproven = await unprovenBlocks(ctx, at, req.blocks, req.parentRevision);
        if (unproven.length > 0) return { missingBlocks: unproven };
        if (unique.length > 0) {
          // Reserve, not just ask: a block about to be referenced must not be collected before the
          // reference (relayed from the outbox after the commit) reaches the blockserver.
          const live = await reserveLive(ctx.blocks, ctx.recentReservations, ctx.metaMetrics.blockReservations, unique, hctx.signal);
          const missing = unique.filter((h) => !live.has(Buffer.from(h).toString("hex")));
          if (missing.length > 0) return { missingBlocks: missing };
        }
        const { file, conflict } = await ctx.files.commit({
          namespaceId: at.mount.namespaceId, path: at.inner, blocks: req.blocks, size: req.size,
          parentRevision: req.parentRevision, requestId: req.requestId, deviceName: at.caller.deviceName,
        }).catch((err: unknown) => {
          if (err instanceof ConnectError && err.code === Code.ResourceExhausted) ctx.metaMetrics.quotaRefusals.inc();
          throw err;
        });
        ctx.relay.wake();
        if (conflict) ctx.metaMetrics.conflicts.inc();
        return { missingBlocks: [], file: toMetadata(file, at.mount, granterFor(ctx, at.caller)), conflict };
      }),
      getFileMetadata: guarded("GetFileMetadata", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "read");
        if (req.revision > 0n) {
          const version = at.inner === ROOT ? undefined : await ctx.files.version(at.mount.namespaceId, req.revision);
          if (!version || pathKey(version.path) !== pathKey(at.inner)) throw notFound(`"${at.path}" has no kept revision ${req.revision}`);
          return { file: toMetadata(version, at.mount, granterFor(ctx, at.caller)) };
        }
        if (at.inner === ROOT) return { file: mountPoint(at.mount) };
        const file = await ctx.files.get(at.mount.namespaceId, at.inner);
        if (!file || file.deleted) throw notFound(`"${at.path}" does not exist`);
        return { file: toMetadata(file, at.mount, granterFor(ctx, at.caller)) };
      }),
      listFolder: guarded("ListFolder", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "read");
        if (at.inner !== ROOT) {
          const folder = await ctx.files.get(at.mount.namespaceId, at.inner);
          if (!folder || folder.deleted) throw notFound(`folder "${at.path}" does not exist`);
          if (!folder.isFolder) throw invalidArgument(`"${at.path}" is a file, not a folder`);
        }
        const pageSize = Math.min(req.pageSize || ctx.config.listPageSize, ctx.config.listPageSize);
        let after = "";
        if (req.pageToken) {
          after = Buffer.from(req.pageToken, "base64url").toString();
          if (!after.startsWith("/")) throw invalidArgument("page_token is malformed: pass next_page_token from the previous response unchanged");
        }
        const page = await ctx.files.list(at.mount.namespaceId, at.inner, {
          recursive: req.recursive, includeDeleted: req.includeDeleted, limit: pageSize, after,
        });
        const last = page.entries.at(-1);
        const grant = granterFor(ctx, at.caller);
        const entries = page.entries.map((f) => toMetadata(f, at.mount, grant));
        if (!req.pageToken) {
          // Shared folders mounted here appear as folders (list them by their own path).
          const key = pathKey(at.path);
          for (const m of at.mounts) if (m.key !== ROOT && pathKey(parentOf(m.path)) === key) entries.push(mountPoint(m));
        }
        return {
          entries,
          hasMore: page.hasMore,
          nextPageToken: page.hasMore && last ? Buffer.from(pathKey(last.path)).toString("base64url") : "",
        };
      }),
      createFolder: guarded("CreateFolder", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "write");
        refuseMountRoot(at, "it exists already");
        return { folder: toMetadata(await ctx.files.createFolder(at.mount.namespaceId, at.inner), at.mount) };
      }),
      delete: guarded("Delete", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "write");
        refuseMountRoot(at, at.mount.role === "owner" ? "unshare it or delete what is in it" : "leave it with LeaveSharedFolder");
        refuseMountsInside(at);
        const r = await ctx.files.delete(at.mount.namespaceId, at.inner, req.parentRevision, req.seenCursor);
        return { entry: toMetadata(r, at.mount, granterFor(ctx, at.caller)), entriesKept: BigInt(r.kept), entriesDeleted: BigInt(r.removed) };
      }),
      undelete: guarded("Undelete", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "write");
        refuseMountRoot(at, "it is not in the trash");
        return { entry: toMetadata(await ctx.files.undelete(at.mount.namespaceId, at.inner), at.mount, granterFor(ctx, at.caller)) };
      }),
      permanentlyDelete: guarded("PermanentlyDelete", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "write");
        refuseMountRoot(at, "it is not in the trash");
        const removed = await ctx.files.purge(at.mount.namespaceId, at.inner);
        ctx.relay.wake();
        return { entriesRemoved: BigInt(removed) };
      }),
      move: guarded("Move", async (req, hctx) => {
        const from = await locate(ctx, hctx, req.fromPath, "write");
        const to = await locate(ctx, hctx, req.toPath, "write");
        if (from.path === ROOT || to.path === ROOT) throw invalidArgument("the root folder cannot be moved or replaced");
        if (from.inner === ROOT && from.mount.path !== ROOT) {
          // Renaming a shared folder in one's own tree moves only the mount.
          if (to.mount.path !== ROOT) throw failedPrecondition("a shared folder can only be placed outside other shared folders");
          if (await ctx.files.get(to.mount.namespaceId, to.inner).then((f) => f && !f.deleted)) throw invalidArgument(`"${to.path}" already exists`);
          await ctx.namespaces.renameMount(from.caller.userId, from.mount.namespaceId, to.path);
          // The caller's other devices learn of it from their root journal.
          await journalMountMove(ctx.txns, to.mount.namespaceId, from.mount.path, to.path);
          return { entry: { ...mountPoint(from.mount), path: to.path, name: to.path.slice(to.path.lastIndexOf("/") + 1) }, descendantsMoved: 0n };
        }
        if (from.mount.namespaceId !== to.mount.namespaceId || to.inner === ROOT) {
          throw failedPrecondition(`"${from.path}" and "${to.path}" are in different shared folders: copy, then delete the original`);
        }
        refuseMountsInside(from);
        const { entry, descendants } = await ctx.files.move(from.mount.namespaceId, from.inner, to.inner);
        return { entry: toMetadata(entry, from.mount, granterFor(ctx, from.caller)), descendantsMoved: BigInt(descendants) };
      }),
      listRevisions: guarded("ListRevisions", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "read");
        const current = await ctx.files.get(at.mount.namespaceId, at.inner);
        if (!current) throw notFound(`"${at.path}" has no versions`);
        if (current.isFolder) throw invalidArgument(`"${at.path}" is a folder; folders have no versions`);
        const revisions = await ctx.files.revisions(at.mount.namespaceId, current.path, req.limit);
        const grant = granterFor(ctx, at.caller);
        return { revisions: revisions.map((r) => toMetadata(r, at.mount, grant)) };
      }),
      restore: guarded("Restore", async (req, hctx) => {
        const at = await locate(ctx, hctx, req.path, "write");
        refuseMountRoot(at, "folders have no versions");
        const version = await ctx.files.version(at.mount.namespaceId, req.revision);
        if (!version || pathKey(version.path) !== pathKey(at.inner)) throw notFound(`"${at.path}" has no kept revision ${req.revision}`);
        const current = await ctx.files.get(at.mount.namespaceId, at.inner);
        // A restore is a new commit of the old block list on top of whatever is current.
        const { file } = await ctx.files.commit({
          namespaceId: at.mount.namespaceId, path: at.inner, blocks: version.blocks, size: version.size,
          parentRevision: current?.revision ?? 0n, requestId: "", deviceName: at.caller.deviceName,
        });
        ctx.relay.wake();
        return { file: toMetadata(file, at.mount, granterFor(ctx, at.caller)) };
      }),
      listNamespaces: guarded("ListNamespaces", async (_req, hctx) => {
        const caller = callerOf(hctx);
        const mounts = await ctx.namespaces.mountsOf(caller.userId);
        const cursors = await ctx.cursors.latest(mounts.map((m) => m.namespaceId));
        return {
          namespaces: mounts.map((m, i) => ({ namespaceId: m.namespaceId, path: m.path, role: ROLES[m.role], cursor: cursors[i] })),
        };
      }),
      listDelta: guarded("ListDelta", async (req, hctx) => {
        const caller = callerOf(hctx);
        const mount = await mountOf(ctx, caller, req.namespaceId);
        const state = await ctx.journal.cursorState(req.namespaceId);
        if (req.cursor > state.cursor) {
          throw invalidArgument(`cursor ${req.cursor} is ahead of namespace ${req.namespaceId} (latest ${state.cursor}): it did not come from this namespace`);
        }
        if (req.cursor < state.floor) return { entries: [], cursor: state.cursor, hasMore: false, reset: true };
        const pageSize = Math.min(req.pageSize || ctx.config.listPageSize, ctx.config.listPageSize);
        const page = await ctx.journal.delta(req.namespaceId, req.cursor, pageSize);
        const grant = granterFor(ctx, caller);
        const entries = page.entries.map((e): JournalEntry => create(JournalEntrySchema, {
          cursor: e.cursor,
          operation: OPERATIONS[e.operation],
          path: outerPath(mount, e.path),
          fromPath: e.fromPath ? outerPath(mount, e.fromPath) : "",
          file: e.file ? { ...toMetadata(e.file, mount, grant), namespaceId: e.mountedNamespaceId ?? req.namespaceId } : undefined,
        }));
        return { entries, cursor: page.entries.at(-1)?.cursor ?? req.cursor, hasMore: page.hasMore, reset: false };
      }),
      waitForChange: guarded("WaitForChange", async (req, hctx) => {
        const caller = callerOf(hctx);
        if (req.cursors.length === 0) throw invalidArgument("name at least one namespace cursor to wait on");
        if (req.cursors.length > MAX_WAIT_NAMESPACES) throw invalidArgument(`wait on at most ${MAX_WAIT_NAMESPACES} namespaces at once`);
        for (const c of req.cursors) await mountOf(ctx, caller, c.namespaceId);
        const limit = ctx.config.waitMaxSeconds;
        const timeout = req.timeoutSeconds === 0 || req.timeoutSeconds > limit ? limit : req.timeoutSeconds;
        const changed = await ctx.cursors.wait(req.cursors, timeout * 1000, hctx.signal);
        // Without Redis the server polls MySQL: ask clients to slow down a little.
        return { changed, backoffSeconds: changed.length > 0 || ctx.cursors.pushAvailable ? 0 : 2 };
      }),
      getSpaceUsage: guarded("GetSpaceUsage", async (_req, hctx) => {
        const caller = callerOf(hctx);
        const user = await ctx.namespaces.findUser({ userId: caller.userId });
        if (!user) throw notFound("your account no longer exists");
        const usage = await ctx.quotas.usage(user.rootNamespaceId);
        return { usedBytes: usage.usedBytes, quotaBytes: usage.quotaBytes };
      }),
      ...batchRoutes(ctx),
      ...shareRoutes(ctx),
    });
  };
}
