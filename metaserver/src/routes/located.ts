import type { HandlerContext } from "@connectrpc/connect";
import { Role } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { MetaserverContext } from "../context.js";
import { notFound, permissionDenied } from "../errors.js";
import { resolveMount, type Mount, type Role as StoredRole } from "../store/namespaces.js";
import { normalizePath } from "../tree/paths.js";
import { callerOf, type Caller } from "./caller.js";

/** Where a caller's path lives: which mounted namespace, with which role (used by every route). */
export interface Located {
  caller: Caller;
  /** The path as the caller sees it (normalised). */
  path: string;
  mount: Mount;
  /** The path inside the mount's namespace. */
  inner: string;
  mounts: Mount[];
}

export const ROLES: Record<StoredRole, Role> = { owner: Role.OWNER, editor: Role.EDITOR, viewer: Role.VIEWER };

/** Finds which of the caller's namespaces a path falls in, refusing writes where the caller only views. */
export async function locate(ctx: MetaserverContext, hctx: HandlerContext, rawPath: string, need: "read" | "write"): Promise<Located> {
  const caller = callerOf(hctx);
  const path = normalizePath(rawPath);
  const mounts = await ctx.namespaces.mountsOf(caller.userId);
  const found = resolveMount(mounts, path);
  if (!found) throw notFound("your account has no root folder");
  if (need === "write" && found.mount.role === "viewer") {
    throw permissionDenied(`"${found.mount.path}" is shared with you as a viewer: you cannot change what is in it`);
  }
  return { caller, path, mount: found.mount, inner: found.inner, mounts };
}

/** A namespace the caller may read (it is mounted in their tree). */
export async function mountOf(ctx: MetaserverContext, caller: Caller, namespaceId: bigint): Promise<Mount> {
  const mount = (await ctx.namespaces.mountsOf(caller.userId)).find((m) => m.namespaceId === namespaceId);
  if (!mount) throw permissionDenied(`namespace ${namespaceId} is not in your tree`);
  return mount;
}
