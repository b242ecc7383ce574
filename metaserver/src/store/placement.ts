import type { RowDataPacket } from "mysql2/promise";
import { notFound } from "../errors.js";
import type { Pool, ShardSet } from "./shards.js";

/**
 * How long a namespace's shard is cached. A move tells every metaserver through Redis; this bounds
 * how long one that missed the message reads the old shard (which keeps its copy that long).
 */
export const PLACEMENT_CACHE_MS = 2000;

/**
 * Placement: which shard holds each namespace (the directory's shard map, cached briefly), where a
 * new namespace goes, and the switch a move makes.
 */
export class NamespacePlacement {
  private readonly shardOfNamespace = new Map<bigint, { shardId: number; at: number }>();

  constructor(private readonly shards: ShardSet) {}

  /** New namespaces spread over shards by owner; the shard map, not this rule, is the truth afterwards. */
  placeNewNamespace(ownerId: bigint): number {
    const ids = this.shards.shardIds;
    return ids[Number(ownerId % BigInt(ids.length))];
  }

  async shardIdOf(namespaceId: bigint): Promise<number> {
    const cached = this.shardOfNamespace.get(namespaceId);
    if (cached && performance.now() - cached.at < PLACEMENT_CACHE_MS) return cached.shardId;
    const [rows] = await this.shards.directory.query<RowDataPacket[]>("SELECT shard_id FROM namespaces WHERE namespace_id = ?", [namespaceId]);
    if (rows.length === 0) throw notFound(`namespace ${namespaceId} does not exist`);
    const shardId = Number(rows[0].shard_id);
    this.remember(namespaceId, shardId);
    return shardId;
  }

  /** The pool of the shard that holds a namespace. */
  async shardFor(namespaceId: bigint): Promise<Pool> {
    return this.shards.shard(await this.shardIdOf(namespaceId));
  }

  /** Forget a cached placement (the namespace moved). */
  forgetPlacement(namespaceId: bigint): void {
    this.shardOfNamespace.delete(namespaceId);
  }

  async setShard(namespaceId: bigint, shardId: number): Promise<void> {
    await this.shards.directory.query("UPDATE namespaces SET shard_id = ? WHERE namespace_id = ?", [shardId, namespaceId]);
    this.remember(namespaceId, shardId);
  }

  get shardIds(): number[] {
    return this.shards.shardIds;
  }

  /** The namespaces a shard holds and serves (not moving away or gone). */
  async activeNamespacesOn(shardId: number): Promise<bigint[]> {
    const [rows] = await this.shards.shard(shardId).query<RowDataPacket[]>("SELECT namespace_id FROM namespace_state WHERE state = 'active'");
    return rows.map((r) => BigInt(r.namespace_id));
  }

  /** Caches where a namespace is (just created or moved there). */
  remember(namespaceId: bigint, shardId: number): void {
    this.shardOfNamespace.set(namespaceId, { shardId, at: performance.now() });
  }
}
