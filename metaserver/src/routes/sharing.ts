import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext } from "@connectrpc/connect";
import {
  Role, type CreateShareLinkRequest, type LeaveSharedFolderRequest, type ListMembersRequest, type ListShareLinksRequest, type RevokeShareLinkRequest,
  type SetLinkPolicyRequest, type ShareFolderRequest, type UnshareRequest,
} from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { MetaserverContext } from "../context.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { linkEnded } from "../links/access.js";
import { signLink } from "../links/link-tokens.js";
import type { Role as StoredRole } from "../store/namespaces.js";
import { journalUnmount, splitOutNamespace } from "../store/sharing.js";
import { outerPath } from "../store/namespaces.js";
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

  /** NOT_FOUND unless the located path holds a live entry (a mount's root always does). */
  const mustExist = async (at: Located) => {
    if (at.inner === ROOT) return;
    const entry = await ctx.files.get(at.mount.namespaceId, at.inner);
    if (!entry || entry.deleted) throw notFound(`"${at.path}" does not exist`);
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
    await ctx.publisher.membershipEnded(member.userId, namespaceId);
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
      return {
        namespaceId: shared.namespaceId, members: members.map((m) => ({ username: m.username, role: ROLES[m.role] })),
        viewersMayCreateLinks: await ctx.namespaces.viewersMayLink(shared.namespaceId),
      };
    }),
    createShareLink: guarded("CreateShareLink", async (req: CreateShareLinkRequest, hctx: HandlerContext) => {
      const at = await locate(ctx, hctx, req.path, "read");
      await mustExist(at);
      if (at.inner === ROOT && at.mount.path === ROOT) {
        throw invalidArgument("your whole root folder cannot be shared by link; link a file or folder in it");
      }
      if (at.mount.role === "viewer" && !(await ctx.namespaces.viewersMayLink(at.mount.namespaceId))) {
        throw permissionDenied(`"${at.mount.path}" is shared with you as a viewer, and its owner does not let viewers make links to what it holds`);
      }
      const max = ctx.config.shareLinkMaxSeconds;
      if (req.expiresInSeconds > max) {
        throw invalidArgument(`expires_in_seconds ${req.expiresInSeconds} is more than this server allows: at most ${max} (${(max / 86400).toFixed(1)} days)`);
      }
      const ttl = req.expiresInSeconds || ctx.config.shareLinkTtlSeconds;
      const expiresAt = new Date(Date.now() + ttl * 1000);
      const linkId = await ctx.namespaces.createLink(at.caller.userId, at.mount.namespaceId, at.inner, expiresAt);
      const token = signLink(ctx.linkKeys, linkId, expiresAt);
      return { linkId, url: `${ctx.config.linksBaseUrl}/s/${token}`, expireTime: timestampFromDate(expiresAt) };
    }),
    revokeShareLink: guarded("RevokeShareLink", async (req: RevokeShareLinkRequest, hctx: HandlerContext) => {
      const caller = callerOf(hctx);
      const link = await ctx.namespaces.findLink(req.linkId);
      // Its creator, or an owner or editor of the folder it is in; to anyone else it does not exist.
      const mount = link && (await ctx.namespaces.mountsOf(caller.userId)).find((m) => m.namespaceId === link.namespaceId);
      const may = link && (link.userId === caller.userId || (mount !== undefined && mount.role !== "viewer"));
      if (!link || !may || !link.live || !(await ctx.namespaces.revokeLink(req.linkId))) throw notFound(`you have no share link ${req.linkId} to revoke`);
      return {};
    }),
    listShareLinks: guarded("ListShareLinks", async (req: ListShareLinksRequest, hctx: HandlerContext) => {
      const at = await locate(ctx, hctx, req.path, "read");
      await mustExist(at);
      if (at.mount.role === "viewer") throw permissionDenied(`"${at.mount.path}" is shared with you as a viewer: only its owner and editors see its links`);
      const links = await ctx.namespaces.liveLinksAt(at.mount.namespaceId, at.inner, req.recursive);
      return {
        links: await Promise.all(links.map(async (l) => {
          const ended = await linkEnded(ctx.namespaces, l);
          return {
            linkId: l.linkId, path: outerPath(at.mount, l.path), createdBy: l.username,
            createTime: timestampFromDate(l.createdAt), expireTime: timestampFromDate(l.expiresAt),
            url: l.userId === at.caller.userId ? `${ctx.config.linksBaseUrl}/s/${signLink(ctx.linkKeys, l.linkId, l.expiresAt)}` : "",
            works: ended === undefined, endedBecause: ended ?? "",
          };
        })),
      };
    }),
    setLinkPolicy: guarded("SetLinkPolicy", async (req: SetLinkPolicyRequest, hctx: HandlerContext) => {
      const shared = await sharedFolderAt(await locate(ctx, hctx, req.path, "read"));
      if (shared.role !== "owner") throw permissionDenied(`only the owner of "${shared.path}" decides whether its viewers may make links`);
      await ctx.namespaces.setViewersMayLink(shared.namespaceId, req.viewersMayCreateLinks);
      return {};
    }),
  };
}
