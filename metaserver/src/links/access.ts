import type { NamespaceStore, LinkRecord } from "../store/namespaces.js";

/**
 * Whether a share link downloads now: undefined when it does, else why not. A link is its
 * creator's word, so it works only while its creator may still read the namespace it is in (a
 * member removed, leaving, or unshared ends it; so does an account gone) and, for a viewer's link,
 * while the folder's owner still lets viewers make links. Mounts are cached for two seconds, so an
 * ended membership ends its links within that.
 */
export async function linkEnded(namespaces: Pick<NamespaceStore, "mountsOf" | "viewersMayLink">, link: LinkRecord): Promise<string | undefined> {
  if (!link.live) return "revoked or expired";
  const mount = (await namespaces.mountsOf(link.userId)).find((m) => m.namespaceId === link.namespaceId);
  if (!mount) return "its creator no longer has access to the folder it is in";
  if (mount.role === "viewer" && !(await namespaces.viewersMayLink(link.namespaceId))) {
    return "its creator is a viewer of the folder, and the folder's owner no longer lets viewers make links";
  }
  return undefined;
}
