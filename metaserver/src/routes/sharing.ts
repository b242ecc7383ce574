import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import { Role, type CreateShareLinkRequest, type ListMembersRequest, type ShareFolderRequest, type UnshareRequest, type LeaveSharedFolderRequest, type RevokeShareLinkRequest } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { MetaserverContext } from "../context.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { signLink } from "../links/link-tokens.js";
import type { Role as StoredRole } from "../store/namespaces.js";
import { journalUnmount, splitOutNamespace } from "../store/sharing.js";
import { nameOf, pathKey, ROOT } from "../tree/paths.js";
import { callerOf, guarded } from "./caller.js";
import { locate, ROLES, type Located } from "./located.js";

const MEMBER_ROLES: Partial<Record<Role, StoredRole>> = { [Role.EDITOR]: "editor", [Role.VIEWER]: "viewer" };

/** Sharing (shared folders and their members) and share links: part of MetaService. */
export function shareRoutes(ctx: MetaserverContext) {
  /** A shared folder at exactly this path of the caller's tree. */
  const sharedFolderAt = async (at: Located) => {
    if (at.inner !== ROOT || at.mount.path === ROOT) {
      const there = at.inner === ROOT ? undefined : await ctx.files.get(at.mount.namespaceId, at.inner);
      if (at.inner !== ROOT && (!there || there.deleted)) throw notFound(`"${at.path}" does not exist`);
      throw failedPrecondition(`"${at.path}" is not a shared folder`);
    }
    return at.mount;
  };

  /** Where a new member sees the folder: "/<name>", or "/<name> (2)" and so on when that is taken. */
  const freeMountPath = async (userId: bigint, rootNamespaceId: bigint, name: string) => {
    const mounts = await ctx.namespaces.mountsOf(userId);
    for (let n = 1; ; n++) {
      const candidate = n === 1 ? `/${name}` : `/${name} (${n})`;
      if (mounts.some((m) => m.key === pathKey(candidate))) continue;
      const existing = await ctx.files.get(rootNamespaceId, candidate);
      if (!existing || existing.deleted) return candidate;
    }
  };

  /**
   * Ends one membership: the mount goes from the member's tree, and their root journal says so, so
   * that every device of theirs drops it (nothing in the shared namespace changes).
   */
  const endMembership = async (member: { userId: bigint; rootNamespaceId: bigint }, namespaceId: bigint): Promise<boolean> => {
    const mount = (await ctx.namespaces.mountsOf(member.userId)).find((m) => m.namespaceId === namespaceId);
    if (!mount || mount.role === "owner" || !(await ctx.namespaces.removeMount(member.userId, namespaceId))) return false;
    await journalUnmount(ctx.txns, member.rootNamespaceId, mount.path);
    return true;
  };

  return {
    shareFolder: guarded("ShareFolder", async (req: ShareFolderRequest, hctx: HandlerContext) => {
      const at = await locate(ctx, hctx, req.path, "write");
      const role = MEMBER_ROLES[req.role];
      if (!role) throw invalidArgument("role must be ROLE_EDITOR or ROLE_VIEWER");
      const member = await ctx.namespaces.findUser({ username: req.username });
      if (!member) throw notFound(`no user named "${req.username}"`);
      if (member.userId === at.caller.userId) throw invalidArgument("you cannot share a folder with yourself");
      let namespaceId: bigint;
      if (at.inner === ROOT && at.mount.path !== ROOT) {
        if (at.mount.role !== "owner") throw permissionDenied(`only the owner of "${at.mount.path}" can share it`);
        namespaceId = at.mount.namespaceId;
      } else if (at.mount.path === ROOT) {
        if (at.inner === ROOT) throw invalidArgument("your root folder cannot be shared; share a folder in it");
        const key = pathKey(at.path);
        const nested = at.mounts.find((m) => m.key !== ROOT && m.key.startsWith(`${key}/`));
        if (nested) throw failedPrecondition(`"${at.path}" contains the shared folder "${nested.path}"; shared folders cannot be nested`);
        const shardId = await ctx.placement.shardIdOf(at.mount.namespaceId);
        namespaceId = await ctx.namespaces.insertNamespace(shardId, at.caller.userId, "shared");
        try {
          await splitOutNamespace(ctx.txns, at.mount.namespaceId, at.inner, namespaceId);
        } catch (err) {
          // Nothing was split out (no such folder, a file, a conflict): the new namespace holds
          // nothing and must not linger in the owner's accounts.
          await ctx.namespaces.dropEmptyNamespace(namespaceId);
          throw err;
        }
        await ctx.namespaces.addMount(at.caller.userId, namespaceId, at.path, "owner");
      } else {
        throw failedPrecondition(`"${at.path}" is inside the shared folder "${at.mount.path}"; share that folder instead`);
      }
      const existing = (await ctx.namespaces.mountsOf(member.userId)).find((m) => m.namespaceId === namespaceId);
      const name = nameOf(at.mount.path !== ROOT && at.inner === ROOT ? at.mount.path : at.path);
      const path = existing?.path ?? (await freeMountPath(member.userId, member.rootNamespaceId, name));
      await ctx.namespaces.addMount(member.userId, namespaceId, path, role);
      return { namespaceId, member: { username: member.username, role: ROLES[role] } };
    }),
    unshare: guarded("Unshare", async (req: UnshareRequest, hctx: HandlerContext) => {
      const at = await locate(ctx, hctx, req.path, "read");
      const shared = await sharedFolderAt(at);
      const member = await ctx.namespaces.findUser({ username: req.username });
      if (!member) throw notFound(`no user named "${req.username}"`);
      const leaving = member.userId === at.caller.userId;
      if (!leaving && shared.role !== "owner") throw permissionDenied(`only the owner of "${shared.path}" can remove members`);
      if (leaving && shared.role === "owner") throw failedPrecondition("the owner cannot leave their own shared folder");
      if (!(await endMembership(member, shared.namespaceId))) throw notFound(`"${req.username}" is not a member of "${shared.path}"`);
      return {};
    }),
    leaveSharedFolder: guarded("LeaveSharedFolder", async (req: LeaveSharedFolderRequest, hctx: HandlerContext) => {
      // The path is resolved in the caller's own tree: another user's folder is not there to name.
      const shared = await sharedFolderAt(await locate(ctx, hctx, req.path, "read"));
      if (shared.role === "owner") throw failedPrecondition(`you own "${shared.path}": unshare it or delete it instead of leaving it`);
      const me = await ctx.namespaces.findUser({ userId: callerOf(hctx).userId });
      if (!me || !(await endMembership(me, shared.namespaceId))) throw notFound(`you are not a member of "${shared.path}"`);
      return { namespaceId: shared.namespaceId };
    }),
    listMembers: guarded("ListMembers", async (req: ListMembersRequest, hctx: HandlerContext) => {
      const shared = await sharedFolderAt(await locate(ctx, hctx, req.path, "read"));
      const members = await ctx.namespaces.members(shared.namespaceId);
      return { namespaceId: shared.namespaceId, members: members.map((m) => ({ username: m.username, role: ROLES[m.role] })) };
    }),
    createShareLink: guarded("CreateShareLink", async (req: CreateShareLinkRequest, hctx: HandlerContext) => {
      const at = await locate(ctx, hctx, req.path, "read");
      if (at.inner !== ROOT) {
        const entry = await ctx.files.get(at.mount.namespaceId, at.inner);
        if (!entry || entry.deleted) throw notFound(`"${at.path}" does not exist`);
      } else if (at.mount.path === ROOT) {
        throw invalidArgument("your whole root folder cannot be shared by link; link a file or folder in it");
      }
      const ttl = req.expiresInSeconds || ctx.config.shareLinkTtlSeconds;
      const expiresAt = new Date(Date.now() + ttl * 1000);
      const linkId = await ctx.namespaces.createLink(at.caller.userId, at.mount.namespaceId, at.inner, expiresAt);
      const token = signLink(ctx.config.tokenKeys, linkId, expiresAt);
      return { linkId, url: `${ctx.config.linksBaseUrl}/s/${token}`, expireTime: timestampFromDate(expiresAt) };
    }),
    revokeShareLink: guarded("RevokeShareLink", async (req: RevokeShareLinkRequest, hctx: HandlerContext) => {
      const caller = callerOf(hctx);
      if (!(await ctx.namespaces.revokeLink(caller.userId, req.linkId))) throw notFound(`you have no share link ${req.linkId}`);
      return {};
    }),
  };
}
