import type { RowDataPacket } from "mysql2/promise";
import { failedPrecondition, notFound } from "../errors.js";
import { packBlockList, unpackBlockList, type BlockEntry } from "../tree/block-list.js";
import { ROOT, ancestorsOf, keyHash, nameOf, parentOf, pathKey } from "../tree/paths.js";
import type { NamespaceStore } from "./namespaces.js";
import { inTransaction, type PoolConnection } from "./shards.js";

export interface FileRecord {
  namespaceId: bigint;
  path: string;
  name: string;
  isFolder: boolean;
  revision: bigint;
  size: bigint;
  blocks: BlockEntry[];
  cursor: bigint;
  modifiedAt: Date;
}

export interface CommitInput {
  namespaceId: bigint;
  path: string;
  blocks: BlockEntry[];
  size: bigint;
  parentRevision: bigint;
  requestId: string;
}

const FILE_COLUMNS = "path, is_folder, revision, size, block_list, cursor_position, modified_at";

/**
 * The file tree of each namespace on its shard. A commit is one transaction: the namespace's
 * cursor row is locked, so cursors (which double as revisions) are strictly increasing with no gaps.
 */
export class FileStore {
  constructor(private readonly namespaces: NamespaceStore) {}

  async commit(input: CommitInput): Promise<FileRecord> {
    const pool = await this.namespaces.shardFor(input.namespaceId);
    const key = pathKey(input.path);
    return inTransaction(pool, async (conn) => {
      const ns = input.namespaceId;
      const [state] = await conn.query<RowDataPacket[]>("SELECT cursor_position FROM namespace_state WHERE namespace_id = ? FOR UPDATE", [ns]);
      if (state.length === 0) throw notFound(`namespace ${ns} has no state on its shard`);
      let cursor = BigInt(state[0].cursor_position);
      if (input.requestId) {
        const [done] = await conn.query<RowDataPacket[]>("SELECT path_key, revision FROM commit_requests WHERE namespace_id = ? AND request_id = ?", [ns, input.requestId]);
        if (done.length > 0) return this.versionOf(conn, ns, input.path, Buffer.from(done[0].path_key).toString(), BigInt(done[0].revision));
      }
      const [existing] = await conn.query<RowDataPacket[]>(
        "SELECT path, is_folder, revision FROM files WHERE namespace_id = ? AND path_key = ? FOR UPDATE", [ns, key],
      );
      const current = existing[0];
      if (current?.is_folder) throw failedPrecondition(`"${input.path}" is a folder; a file cannot replace it`);
      const currentRevision = current ? BigInt(current.revision) : 0n;
      if (currentRevision !== input.parentRevision) {
        throw failedPrecondition(
          current
            ? `"${input.path}" is at revision ${currentRevision}, not ${input.parentRevision}: fetch the current version and retry with it as the parent`
            : `"${input.path}" does not exist; commit a new file with parent revision 0`,
        );
      }
      // Uploading into a folder that does not exist creates it, as on Dropbox.
      for (const folder of ancestorsOf(input.path)) {
        const fkey = pathKey(folder);
        const [rows] = await conn.query<RowDataPacket[]>("SELECT is_folder FROM files WHERE namespace_id = ? AND path_key = ? FOR UPDATE", [ns, fkey]);
        if (rows.length > 0) {
          if (!rows[0].is_folder) throw failedPrecondition(`"${folder}" is a file, so "${input.path}" cannot be created inside it`);
          continue;
        }
        cursor += 1n;
        await conn.query(
          `INSERT INTO files (namespace_id, path_key, parent_key_hash, path, is_folder, revision, size, block_list, cursor_position)
           VALUES (?, ?, ?, ?, TRUE, ?, 0, '', ?)`,
          [ns, fkey, keyHash(pathKey(parentOf(folder))), folder, cursor, cursor],
        );
        await conn.query("INSERT INTO journal (namespace_id, cursor_position, path, operation, revision) VALUES (?, ?, ?, 'mkdir', ?)", [ns, cursor, folder, cursor]);
      }
      cursor += 1n;
      const revision = cursor;
      const blockList = packBlockList(input.blocks);
      await conn.query(
        `INSERT INTO files (namespace_id, path_key, parent_key_hash, path, is_folder, revision, size, block_list, cursor_position, modified_at)
         VALUES (?, ?, ?, ?, FALSE, ?, ?, ?, ?, CURRENT_TIMESTAMP(3))
         ON DUPLICATE KEY UPDATE revision = VALUES(revision), size = VALUES(size),
           block_list = VALUES(block_list), cursor_position = VALUES(cursor_position), modified_at = VALUES(modified_at)`,
        [ns, key, keyHash(pathKey(parentOf(input.path))), input.path, revision, input.size, blockList, cursor],
      );
      await conn.query(
        "INSERT INTO file_versions (namespace_id, path_key, revision, size, block_list, cursor_position) VALUES (?, ?, ?, ?, ?, ?)",
        [ns, key, revision, input.size, blockList, cursor],
      );
      await conn.query("INSERT INTO journal (namespace_id, cursor_position, path, operation, revision) VALUES (?, ?, ?, 'put', ?)", [ns, cursor, input.path, revision]);
      // The new version's block references, in the same transaction: relayed to the blockserver later.
      const distinct = [...new Map(input.blocks.map((b) => [Buffer.from(b.hash).toString("hex"), Buffer.from(b.hash)])).values()];
      if (distinct.length > 0) {
        await conn.query("INSERT INTO block_reference_outbox (hash, delta) VALUES ?", [distinct.map((h) => [h, 1])]);
      }
      await conn.query("UPDATE namespace_state SET cursor_position = ? WHERE namespace_id = ?", [cursor, ns]);
      if (input.requestId) {
        await conn.query("INSERT INTO commit_requests (namespace_id, request_id, path_key, revision) VALUES (?, ?, ?, ?)", [ns, input.requestId, key, revision]);
      }
      // An existing file keeps the case it was created with, as on Dropbox.
      return this.versionOf(conn, ns, current?.path ?? input.path, key, revision);
    });
  }

  /** A stored version of a file, as returned by a commit (also when a retried request id is replayed). */
  private async versionOf(conn: PoolConnection, ns: bigint, path: string, key: string, revision: bigint): Promise<FileRecord> {
    const [rows] = await conn.query<RowDataPacket[]>(
      "SELECT size, block_list, cursor_position, created_at FROM file_versions WHERE namespace_id = ? AND path_key = ? AND revision = ?",
      [ns, key, revision],
    );
    const r = rows[0];
    return {
      namespaceId: ns, path, name: nameOf(path), isFolder: false, revision,
      size: BigInt(r.size), blocks: unpackBlockList(r.block_list), cursor: BigInt(r.cursor_position), modifiedAt: r.created_at,
    };
  }

  async get(namespaceId: bigint, path: string): Promise<FileRecord | undefined> {
    const pool = await this.namespaces.shardFor(namespaceId);
    const [rows] = await pool.query<RowDataPacket[]>(
      `SELECT ${FILE_COLUMNS} FROM files WHERE namespace_id = ? AND path_key = ?`, [namespaceId, pathKey(path)],
    );
    return rows.length ? toRecord(namespaceId, rows[0]) : undefined;
  }

  /** One page of a folder, in path order; `after` is the last path key of the previous page. */
  async list(namespaceId: bigint, folder: string, recursive: boolean, limit: number, after: string): Promise<{ entries: FileRecord[]; hasMore: boolean }> {
    const pool = await this.namespaces.shardFor(namespaceId);
    const key = pathKey(folder);
    let rows: RowDataPacket[];
    if (recursive) {
      // Descendants of /a are the keys in ("/a/", "/a0"): "0" is the character after "/".
      const lo = folder === ROOT ? "/" : `${key}/`;
      const hi = folder === ROOT ? "0" : `${key}0`;
      [rows] = await pool.query<RowDataPacket[]>(
        `SELECT ${FILE_COLUMNS} FROM files WHERE namespace_id = ? AND path_key > ? AND path_key < ? ORDER BY path_key LIMIT ?`,
        [namespaceId, after && after > lo ? after : lo, hi, limit + 1],
      );
    } else {
      [rows] = await pool.query<RowDataPacket[]>(
        `SELECT ${FILE_COLUMNS} FROM files WHERE namespace_id = ? AND parent_key_hash = ? AND path_key > ? ORDER BY path_key LIMIT ?`,
        [namespaceId, keyHash(key), after, limit + 1],
      );
    }
    const hasMore = rows.length > limit;
    return { entries: rows.slice(0, limit).map((r) => toRecord(namespaceId, r)), hasMore };
  }
}

function toRecord(namespaceId: bigint, r: RowDataPacket): FileRecord {
  return {
    namespaceId,
    path: r.path,
    name: nameOf(r.path),
    isFolder: Boolean(r.is_folder),
    revision: BigInt(r.revision),
    size: BigInt(r.size),
    blocks: r.is_folder ? [] : unpackBlockList(r.block_list),
    cursor: BigInt(r.cursor_position),
    modifiedAt: r.modified_at,
  };
}
