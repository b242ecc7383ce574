import type { Pool, RowDataPacket } from "mysql2/promise";
import { directoryPool, type TlsConfig } from "@satchel/proto";

/** How long a user's namespaces are cached. */
const CACHE_MS = 2000;

/** Which namespaces each user may watch: those mounted in their tree (read from the directory). */
export class MountDirectory {
  private readonly pool: Pool;
  private readonly cache = new Map<string, { at: number; namespaces: Set<bigint> }>();

  constructor(directoryUrl: string, tls: TlsConfig | undefined) {
    this.pool = directoryPool(directoryUrl, { shardConnections: 4, bigNumbers: true, tls });
  }

  async namespacesOf(userId: string): Promise<Set<bigint>> {
    const hit = this.cache.get(userId);
    if (hit && performance.now() - hit.at < CACHE_MS) return hit.namespaces;
    const [rows] = await this.pool.query<RowDataPacket[]>("SELECT namespace_id FROM mounts WHERE user_id = ?", [userId]);
    const namespaces = new Set(rows.map((r) => BigInt(r.namespace_id)));
    this.cache.set(userId, { at: performance.now(), namespaces });
    return namespaces;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
