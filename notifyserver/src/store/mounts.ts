import { createClient, type Client } from "@connectrpc/connect";
import { createSatchelTransport, type TlsConfig } from "@satchel/proto";
import { MetaAdminService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";

/** How long a user's namespaces are cached for new streams and polls. */
const CACHE_MS = 2000;
/** Users per ListMemberships call. */
const BATCH = 1000;

/**
 * Which namespaces each user may watch (those mounted in their tree), as the metaserver says
 * (MetaAdminService.ListMemberships, with this service's credential): the notifyserver reads no
 * table of the metaserver's.
 */
export class Memberships {
  private readonly admin: Client<typeof MetaAdminService>;
  private readonly cache = new Map<string, { at: number; namespaces: Set<bigint> }>();

  constructor(metaserverUrl: string, serviceToken: string, tls: TlsConfig | undefined) {
    this.admin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: metaserverUrl, token: serviceToken, ca: tls?.ca }));
  }

  /** A user's namespaces, cached for a moment (a new stream or poll). */
  async namespacesOf(userId: string): Promise<Set<bigint>> {
    const hit = this.cache.get(userId);
    if (hit && performance.now() - hit.at < CACHE_MS) return hit.namespaces;
    return (await this.current([userId])).get(userId)!;
  }

  /** Each user's namespaces as they are now (a recheck of open streams); refreshes the cache. */
  async current(userIds: string[]): Promise<Map<string, Set<bigint>>> {
    const out = new Map<string, Set<bigint>>();
    for (let i = 0; i < userIds.length; i += BATCH) {
      const batch = userIds.slice(i, i + BATCH);
      const { memberships } = await this.admin.listMemberships({ userIds: batch.map(BigInt) });
      for (const m of memberships) {
        const namespaces = new Set(m.namespaceIds);
        out.set(m.userId.toString(), namespaces);
        this.cache.set(m.userId.toString(), { at: performance.now(), namespaces });
      }
    }
    return out;
  }

  /** Forgets a user's cached namespaces (their membership changed). */
  forget(userId: string): void {
    this.cache.delete(userId);
  }
}
