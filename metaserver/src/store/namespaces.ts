import type { ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { alreadyExists, notFound } from "../errors.js";
import { pathKey, ROOT } from "../tree/paths.js";
import type { NamespacePlacement } from "./placement.js";
import { inTransaction, type Pool, type PoolConnection, type ShardSet } from "./shards.js";

export interface UserRecord {
  userId: bigint;
  username: string;
  rootNamespaceId: bigint;
  passwordHash: string;
  /** null: the server's default quota. */
  quotaBytes: bigint | null;
}

export type Role = "owner" | "editor" | "viewer";

/** Where a namespace appears in one user's tree. */
export interface Mount {
  namespaceId: bigint;
  path: string;
  key: string;
  role: Role;
}

export interface DeviceRecord {
  deviceId: bigint;
  userId: bigint;
  name: string;
  createdAt: Date;
  lastSeenAt: Date;
}

/** How long a user's mounts are cached; share changes made here invalidate at once. */
const MOUNT_CACHE_MS = 2000;
/**
 * The directory: users, devices and their refresh tokens, namespaces, the mounts that place
 * namespaces in users' trees, members and share links. Which shard holds a namespace is
 * placement's (placement.ts).
 */
export class NamespaceStore {
  private readonly mountCache = new Map<bigint, { at: number; mounts: Mount[] }>();

  constructor(private readonly shards: ShardSet, private readonly placement: Pick<NamespacePlacement, "placeNewNamespace" | "remember" | "forgetPlacement">) {}

  get directory(): Pool {
    return this.shards.directory;
  }

  /** Creates a user with its root namespace (on a shard chosen by user id) mounted at "/". */
  async createUser(username: string, passwordHash: string): Promise<UserRecord> {
    const created = await inTransaction(this.directory, async (conn) => {
      const [res] = await conn.query<ResultSetHeader>("INSERT IGNORE INTO users (username, password_hash) VALUES (?, ?)", [username, passwordHash]);
      if (res.affectedRows === 0) throw alreadyExists(`the username "${username}" is taken`);
      const userId = BigInt(res.insertId);
      const shardId = this.placement.placeNewNamespace(userId);
      const namespaceId = await this.insertNamespace(shardId, userId, "root", conn);
      await conn.query("UPDATE users SET root_namespace_id = ? WHERE user_id = ?", [namespaceId, userId]);
      await conn.query("INSERT INTO mounts (user_id, namespace_id, path, path_key, role) VALUES (?, ?, '/', '/', 'owner')", [userId, namespaceId]);
      return { userId, namespaceId, shardId };
    });
    await this.shards.shard(created.shardId).query("INSERT IGNORE INTO namespace_state (namespace_id) VALUES (?)", [created.namespaceId]);
    return { userId: created.userId, username, rootNamespaceId: created.namespaceId, passwordHash, quotaBytes: null };
  }

  /** A new namespace on a shard (in the caller's directory transaction, if given). */
  async insertNamespace(shardId: number, ownerId: bigint, kind: "root" | "shared", conn: PoolConnection | Pool = this.directory): Promise<bigint> {
    const [res] = await conn.query<ResultSetHeader>("INSERT INTO namespaces (shard_id, owner_user_id, kind) VALUES (?, ?, ?)", [shardId, ownerId, kind]);
    const namespaceId = BigInt(res.insertId);
    this.placement.remember(namespaceId, shardId);
    return namespaceId;
  }

  /** Removes a namespace that was never given a tree (its split failed): no mounts, no state. */
  async dropEmptyNamespace(namespaceId: bigint): Promise<void> {
    await this.directory.query("DELETE FROM namespaces WHERE namespace_id = ? AND kind = 'shared'", [namespaceId]);
    this.placement.forgetPlacement(namespaceId);
  }

  async findUser(by: { username: string } | { userId: bigint }): Promise<UserRecord | undefined> {
    const [column, value] = "username" in by ? ["username", by.username] : ["user_id", by.userId];
    const [rows] = await this.directory.query<RowDataPacket[]>(
      `SELECT user_id, username, root_namespace_id, password_hash, quota_bytes FROM users WHERE ${column} = ?`, [value],
    );
    const r = rows[0];
    if (!r || r.root_namespace_id === null) return undefined;
    return {
      userId: BigInt(r.user_id), username: r.username, rootNamespaceId: BigInt(r.root_namespace_id),
      passwordHash: r.password_hash ?? "", quotaBytes: r.quota_bytes === null ? null : BigInt(r.quota_bytes),
    };
  }

  async setQuota(username: string, quotaBytes: bigint | null): Promise<void> {
    const [res] = await this.directory.query<ResultSetHeader>("UPDATE users SET quota_bytes = ? WHERE username = ?", [quotaBytes, username]);
    if (res.affectedRows === 0) throw notFound(`no user named "${username}"`);
  }

  // Devices and refresh tokens.

  async upsertDevice(userId: bigint, name: string): Promise<DeviceRecord> {
    await this.directory.query("INSERT INTO devices (user_id, name) VALUES (?, ?) ON DUPLICATE KEY UPDATE last_seen_at = CURRENT_TIMESTAMP(3)", [userId, name]);
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT * FROM devices WHERE user_id = ? AND name = ?", [userId, name]);
    return toDevice(rows[0]);
  }

  async setRefresh(deviceId: bigint, refreshHash: Buffer, expiresAt: Date): Promise<void> {
    await this.directory.query(
      "UPDATE devices SET refresh_hash = ?, refresh_expires_at = ?, last_seen_at = CURRENT_TIMESTAMP(3) WHERE device_id = ?", [refreshHash, expiresAt, deviceId],
    );
  }

  /**
   * Trades a refresh token (by its hash) for the device it belongs to, replacing it with the next
   * one in the same statement, so each refresh token works once.
   */
  async rotateRefresh(oldHash: Buffer, newHash: Buffer, expiresAt: Date): Promise<DeviceRecord | undefined> {
    // Racing refreshes of one token may deadlock on its index entry (InnoDB picks a victim): the
    // victim tries again and finds the token used, as a racer that waited would.
    for (let attempt = 1; ; attempt++) {
      try {
        return await inTransaction(this.directory, async (conn) => {
          const [rows] = await conn.query<RowDataPacket[]>(
            "SELECT * FROM devices WHERE refresh_hash = ? AND refresh_expires_at > CURRENT_TIMESTAMP(3) FOR UPDATE", [oldHash],
          );
          if (rows.length === 0) return undefined;
          await conn.query("UPDATE devices SET refresh_hash = ?, refresh_expires_at = ?, last_seen_at = CURRENT_TIMESTAMP(3) WHERE device_id = ?", [newHash, expiresAt, rows[0].device_id]);
          return toDevice(rows[0]);
        });
      } catch (err) {
        if ((err as { code?: string }).code !== "ER_LOCK_DEADLOCK" || attempt === 3) throw err;
      }
    }
  }

  async listDevices(userId: bigint): Promise<DeviceRecord[]> {
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT * FROM devices WHERE user_id = ? ORDER BY device_id", [userId]);
    return rows.map(toDevice);
  }

  async revokeDevice(userId: bigint, deviceId: bigint): Promise<boolean> {
    const [res] = await this.directory.query<ResultSetHeader>("DELETE FROM devices WHERE user_id = ? AND device_id = ?", [userId, deviceId]);
    return res.affectedRows > 0;
  }

  // Mounts.

  async mountsOf(userId: bigint): Promise<Mount[]> {
    const cached = this.mountCache.get(userId);
    if (cached && performance.now() - cached.at < MOUNT_CACHE_MS) return cached.mounts;
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT namespace_id, path, role FROM mounts WHERE user_id = ?", [userId]);
    const mounts = rows.map((r): Mount => ({ namespaceId: BigInt(r.namespace_id), path: r.path, key: pathKey(r.path), role: r.role }));
    this.mountCache.set(userId, { at: performance.now(), mounts });
    return mounts;
  }

  forgetMounts(userId?: bigint): void {
    if (userId === undefined) this.mountCache.clear();
    else this.mountCache.delete(userId);
  }

  async addMount(userId: bigint, namespaceId: bigint, path: string, role: Role): Promise<void> {
    await this.directory.query(
      "INSERT INTO mounts (user_id, namespace_id, path, path_key, role) VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE role = VALUES(role)",
      [userId, namespaceId, path, pathKey(path), role],
    );
    this.forgetMounts(userId);
  }

  async removeMount(userId: bigint, namespaceId: bigint): Promise<boolean> {
    const [res] = await this.directory.query<ResultSetHeader>("DELETE FROM mounts WHERE user_id = ? AND namespace_id = ? AND role <> 'owner'", [userId, namespaceId]);
    this.forgetMounts(userId);
    return res.affectedRows > 0;
  }

  async renameMount(userId: bigint, namespaceId: bigint, path: string): Promise<void> {
    await this.directory.query("UPDATE mounts SET path = ?, path_key = ? WHERE user_id = ? AND namespace_id = ?", [path, pathKey(path), userId, namespaceId]);
    this.forgetMounts(userId);
  }

  async members(namespaceId: bigint): Promise<{ userId: bigint; username: string; role: Role; path: string }[]> {
    const [rows] = await this.directory.query<RowDataPacket[]>(
      "SELECT m.user_id, u.username, m.role, m.path FROM mounts m JOIN users u ON u.user_id = m.user_id WHERE m.namespace_id = ? ORDER BY m.role, u.username",
      [namespaceId],
    );
    return rows.map((r) => ({ userId: BigInt(r.user_id), username: r.username, role: r.role, path: r.path }));
  }

  /** The owner of a namespace and the namespaces it owns (for quotas). */
  async ownership(namespaceId: bigint): Promise<{ ownerId: bigint; owned: bigint[]; quotaBytes: bigint | null }> {
    const [rows] = await this.directory.query<RowDataPacket[]>(
      `SELECT n2.namespace_id, n.owner_user_id, u.quota_bytes FROM namespaces n
         JOIN users u ON u.user_id = n.owner_user_id
         JOIN namespaces n2 ON n2.owner_user_id = n.owner_user_id
       WHERE n.namespace_id = ?`, [namespaceId],
    );
    if (rows.length === 0) throw notFound(`namespace ${namespaceId} is not in the shard map`);
    return {
      ownerId: BigInt(rows[0].owner_user_id),
      owned: rows.map((r) => BigInt(r.namespace_id)),
      quotaBytes: rows[0].quota_bytes === null ? null : BigInt(rows[0].quota_bytes),
    };
  }

  /** The namespaces mounted in each user's tree, read now (not from the mount cache). */
  async membershipsOf(userIds: bigint[]): Promise<Map<bigint, bigint[]>> {
    const out = new Map<bigint, bigint[]>();
    if (userIds.length === 0) return out;
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT user_id, namespace_id FROM mounts WHERE user_id IN (?)", [userIds]);
    for (const r of rows) {
      const id = BigInt(r.user_id);
      out.set(id, [...(out.get(id) ?? []), BigInt(r.namespace_id)]);
    }
    return out;
  }

  // Share links.

  async createLink(userId: bigint, namespaceId: bigint, path: string, expiresAt: Date): Promise<bigint> {
    const [res] = await this.directory.query<ResultSetHeader>(
      "INSERT INTO share_links (user_id, namespace_id, path, expires_at) VALUES (?, ?, ?, ?)", [userId, namespaceId, path, expiresAt],
    );
    return BigInt(res.insertId);
  }

  async findLink(linkId: bigint): Promise<LinkRecord | undefined> {
    const [rows] = await this.directory.query<RowDataPacket[]>(`${LINK_COLUMNS} WHERE l.link_id = ?`, [linkId]);
    return rows[0] ? toLink(rows[0]) : undefined;
  }

  /** The links not revoked nor expired on a namespace's path, or (recursive) on it and under it. */
  async liveLinksAt(namespaceId: bigint, path: string, recursive: boolean): Promise<LinkRecord[]> {
    const [rows] = await this.directory.query<RowDataPacket[]>(
      `${LINK_COLUMNS} WHERE l.namespace_id = ? AND l.revoked_at IS NULL AND l.expires_at > CURRENT_TIMESTAMP(3) ORDER BY l.link_id`, [namespaceId],
    );
    const key = pathKey(path);
    const on = (p: string) => pathKey(p) === key || (recursive && (key === ROOT || pathKey(p).startsWith(`${key}/`)));
    return rows.map(toLink).filter((l) => on(l.path));
  }

  /** Revokes a link (the caller has checked who may); whether it was live until now. */
  async revokeLink(linkId: bigint): Promise<boolean> {
    const [res] = await this.directory.query<ResultSetHeader>(
      "UPDATE share_links SET revoked_at = CURRENT_TIMESTAMP(3) WHERE link_id = ? AND revoked_at IS NULL", [linkId],
    );
    return res.affectedRows > 0;
  }

  /** Whether the viewers of a shared folder may make links to what it holds (its owner's choice). */
  async viewersMayLink(namespaceId: bigint): Promise<boolean> {
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT viewers_may_link FROM namespaces WHERE namespace_id = ?", [namespaceId]);
    return Boolean(rows[0]?.viewers_may_link);
  }

  async setViewersMayLink(namespaceId: bigint, allowed: boolean): Promise<void> {
    await this.directory.query("UPDATE namespaces SET viewers_may_link = ? WHERE namespace_id = ?", [allowed ? 1 : 0, namespaceId]);
  }
}

/** A share link as stored, with its creator's username. */
export interface LinkRecord {
  linkId: bigint;
  userId: bigint;
  username: string;
  namespaceId: bigint;
  /** Inside the namespace. */
  path: string;
  createdAt: Date;
  expiresAt: Date;
  /** Neither revoked nor expired (whether its creator may still read the path is the caller's to check). */
  live: boolean;
}

const LINK_COLUMNS = `SELECT l.link_id, l.user_id, COALESCE(u.username, '') AS username, l.namespace_id, l.path, l.created_at, l.expires_at,
    l.revoked_at IS NULL AND l.expires_at > CURRENT_TIMESTAMP(3) AS live
  FROM share_links l LEFT JOIN users u ON u.user_id = l.user_id`;

function toLink(r: RowDataPacket): LinkRecord {
  return {
    linkId: BigInt(r.link_id), userId: BigInt(r.user_id), username: r.username, namespaceId: BigInt(r.namespace_id), path: r.path,
    createdAt: r.created_at, expiresAt: r.expires_at, live: Boolean(r.live),
  };
}

function toDevice(r: RowDataPacket): DeviceRecord {
  return { deviceId: BigInt(r.device_id), userId: BigInt(r.user_id), name: r.name, createdAt: r.created_at, lastSeenAt: r.last_seen_at };
}

/** The mount a path falls in (the longest mount path that is a prefix of it) and the path inside it. */
export function resolveMount(mounts: Mount[], path: string): { mount: Mount; inner: string } | undefined {
  const key = pathKey(path);
  let best: Mount | undefined;
  for (const m of mounts) {
    const inside = m.key === ROOT || key === m.key || key.startsWith(`${m.key}/`);
    if (inside && (!best || m.key.length > best.key.length)) best = m;
  }
  if (!best) return undefined;
  const inner = best.key === ROOT ? path : path.slice(best.path.length) || ROOT;
  return { mount: best, inner };
}

/** The caller's view of a namespace-relative path. */
export function outerPath(mount: Pick<Mount, "path">, inner: string): string {
  if (mount.path === ROOT) return inner;
  return inner === ROOT ? mount.path : `${mount.path}${inner}`;
}
