import type { RowDataPacket } from "mysql2/promise";
import { unpackBlockList } from "../tree/block-list.js";
import type { AffectedFileRef } from "../verify/findings.js";
import type { ShardSet } from "./shards.js";

/** Version keys read per query while walking a shard. */
const VERSION_PAGE = 1000;
/** Block-list bytes fetched per query (one version's list is at most 16 MiB, a MEDIUMBLOB). */
const BLOCK_LIST_BYTES = 8 << 20;

export interface VersionBlocks extends AffectedFileRef {
  /** The distinct block hashes of the version, by hex. */
  hashes: Map<string, Buffer>;
}

type VersionKey = [bigint, Buffer, bigint];

/** Rows after `k` in (namespace_id, path_key, revision) order, as a range the primary key serves. */
const after = (k: VersionKey) => ({
  sql: "(v.namespace_id > ? OR (v.namespace_id = ? AND (v.path_key > ? OR (v.path_key = ? AND v.revision > ?))))",
  args: [k[0], k[0], k[1], k[1], k[2]],
});
const upTo = (k: VersionKey) => ({
  sql: "(v.namespace_id < ? OR (v.namespace_id = ? AND (v.path_key < ? OR (v.path_key = ? AND v.revision <= ?))))",
  args: [k[0], k[0], k[1], k[1], k[2]],
});
/** Only namespaces this shard serves: a namespace moved away (or not yet moved in) is skipped. */
const SERVED = "JOIN namespace_state s ON s.namespace_id = v.namespace_id AND s.state IN ('active', 'moving')";

/** What the verifier reads of the shards: every live version's blocks, and who and where a version is. */
export class VersionReads {
  constructor(private readonly shards: ShardSet) {}

  /**
   * Every live file version on every shard, a page at a time, in key order. Keys (and block-list
   * lengths) come first; the block lists follow in runs of at most BLOCK_LIST_BYTES, so a page of
   * huge files stays small in memory.
   */
  async *walk(signal?: AbortSignal): AsyncGenerator<VersionBlocks[]> {
    const shards = this.shards;
    for (const shardId of shards.shardIds) {
      const pool = shards.shard(shardId);
      let last: VersionKey | undefined;
      for (;;) {
        signal?.throwIfAborted();
        const from = last ? after(last) : undefined;
        const [keys] = await pool.query<RowDataPacket[]>(
          `SELECT v.namespace_id, v.path_key, v.revision, LENGTH(v.block_list) AS bytes FROM file_versions v ${SERVED}
            ${from ? `WHERE ${from.sql}` : ""} ORDER BY v.namespace_id, v.path_key, v.revision LIMIT ?`,
          [...(from?.args ?? []), VERSION_PAGE],
        );
        if (keys.length === 0) break;
        const page: VersionBlocks[] = [];
        let runStart = last;
        let runBytes = 0;
        for (let i = 0; i < keys.length; i++) {
          runBytes += Number(keys[i].bytes);
          if (runBytes < BLOCK_LIST_BYTES && i < keys.length - 1) continue;
          const end: VersionKey = [BigInt(keys[i].namespace_id), keys[i].path_key as Buffer, BigInt(keys[i].revision)];
          const lower = runStart ? after(runStart) : undefined;
          const upper = upTo(end);
          const [rows] = await pool.query<RowDataPacket[]>(
            `SELECT v.namespace_id, v.path_key, v.revision, v.block_list FROM file_versions v ${SERVED}
              WHERE ${lower ? `${lower.sql} AND ` : ""}${upper.sql} ORDER BY v.namespace_id, v.path_key, v.revision`,
            [...(lower?.args ?? []), ...upper.args],
          );
          for (const r of rows) {
            const hashes = new Map<string, Buffer>();
            for (const b of unpackBlockList(r.block_list as Buffer)) hashes.set(Buffer.from(b.hash).toString("hex"), Buffer.from(b.hash));
            page.push({ shardId, namespaceId: BigInt(r.namespace_id), pathKey: r.path_key as Buffer, revision: BigInt(r.revision), hashes });
          }
          runStart = end;
          runBytes = 0;
        }
        yield page;
        last = runStart;
        if (keys.length < VERSION_PAGE) break;
      }
    }
  }

  /** Display paths ("namespace/path-key hex" -> path) of versions still at their file's path. */
  async displayPaths(shardId: number, refs: AffectedFileRef[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < refs.length; i += 500) {
      const [rows] = await this.shards.shard(shardId).query<RowDataPacket[]>(
        "SELECT namespace_id, path_key, path FROM files WHERE (namespace_id, path_key) IN (?)",
        [refs.slice(i, i + 500).map((r) => [r.namespaceId, r.pathKey])],
      );
      for (const row of rows) out.set(`${row.namespace_id}/${(row.path_key as Buffer).toString("hex")}`, row.path);
    }
    return out;
  }

  /** The username of each namespace's owner, by namespace id (as a string). */
  async owners(namespaceIds: bigint[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < namespaceIds.length; i += 500) {
      const [rows] = await this.shards.directory.query<RowDataPacket[]>(
        "SELECT n.namespace_id, u.username FROM namespaces n JOIN users u ON u.user_id = n.owner_user_id WHERE n.namespace_id IN (?)",
        [namespaceIds.slice(i, i + 500)],
      );
      for (const row of rows) out.set(String(row.namespace_id), row.username);
    }
    return out;
  }
}
