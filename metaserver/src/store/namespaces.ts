import type { ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { inTransaction, type Pool, type ShardSet } from "./shards.js";

export interface UserRecord {
  userId: bigint;
  username: string;
  rootNamespaceId: bigint;
}

/** Users and their namespaces in the directory, and which shard holds each namespace. */
export class NamespaceStore {
  private readonly shardOfNamespace = new Map<bigint, number>();

  constructor(private readonly shards: ShardSet) {}

  /** Finds a user, creating it and its root namespace on first use. */
  async ensureUser(username: string): Promise<UserRecord> {
    const found = await this.findUser(username);
    if (found) return found;
    const created = await inTransaction(this.shards.directory, async (conn): Promise<UserRecord & { newShardId?: number }> => {
      await conn.query("INSERT IGNORE INTO users (username) VALUES (?)", [username]);
      const [rows] = await conn.query<RowDataPacket[]>("SELECT user_id, root_namespace_id FROM users WHERE username = ? FOR UPDATE", [username]);
      const userId = BigInt(rows[0].user_id);
      if (rows[0].root_namespace_id !== null) return { userId, username, rootNamespaceId: BigInt(rows[0].root_namespace_id) };
      const shardId = this.placeNewNamespace(userId);
      const [res] = await conn.query<ResultSetHeader>("INSERT INTO namespaces (shard_id, owner_user_id, kind) VALUES (?, ?, 'root')", [shardId, userId]);
      const namespaceId = BigInt(res.insertId);
      await conn.query("UPDATE users SET root_namespace_id = ? WHERE user_id = ?", [namespaceId, userId]);
      return { userId, username, rootNamespaceId: namespaceId, newShardId: shardId };
    });
    if (created.newShardId !== undefined) {
      await this.shards.shard(created.newShardId).query("INSERT IGNORE INTO namespace_state (namespace_id, cursor_position) VALUES (?, 0)", [created.rootNamespaceId]);
    }
    return { userId: created.userId, username, rootNamespaceId: created.rootNamespaceId };
  }

  private async findUser(username: string): Promise<UserRecord | undefined> {
    const [rows] = await this.shards.directory.query<RowDataPacket[]>(
      "SELECT user_id, root_namespace_id FROM users WHERE username = ?", [username],
    );
    if (rows.length === 0 || rows[0].root_namespace_id === null) return undefined;
    return { userId: BigInt(rows[0].user_id), username, rootNamespaceId: BigInt(rows[0].root_namespace_id) };
  }

  /** New namespaces spread over shards by owner; the shard map, not this rule, is the truth afterwards. */
  private placeNewNamespace(ownerId: bigint): number {
    const ids = this.shards.shardIds;
    return ids[Number(ownerId % BigInt(ids.length))];
  }

  /** The pool of the shard that holds a namespace. */
  async shardFor(namespaceId: bigint): Promise<Pool> {
    let shardId = this.shardOfNamespace.get(namespaceId);
    if (shardId === undefined) {
      const [rows] = await this.shards.directory.query<RowDataPacket[]>("SELECT shard_id FROM namespaces WHERE namespace_id = ?", [namespaceId]);
      if (rows.length === 0) throw new Error(`namespace ${namespaceId} is not in the shard map`);
      shardId = Number(rows[0].shard_id);
      this.shardOfNamespace.set(namespaceId, shardId);
    }
    return this.shards.shard(shardId);
  }
}
