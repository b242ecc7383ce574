import type { RowDataPacket } from "mysql2/promise";
import { unpackBlockList, type BlockEntry } from "../tree/block-list.js";
import { ROOT, nameOf } from "../tree/paths.js";

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
  deleted: boolean;
}

export interface CommitInput {
  namespaceId: bigint;
  path: string;
  blocks: BlockEntry[];
  size: bigint;
  parentRevision: bigint;
  requestId: string;
  /** Names the conflicted copy when the parent revision is stale. */
  deviceName: string;
}

export type JournalOperation = "put" | "mkdir" | "delete" | "move" | "mount";

export interface JournalRecord {
  cursor: bigint;
  operation: JournalOperation;
  path: string;
  fromPath: string | null;
  mountedNamespaceId: bigint | null;
  /** The version a put made (absent when it was pruned since). */
  file?: FileRecord;
}

export interface RetentionPolicy {
  retentionDays: number;
  versionsKept: number;
  journalDays: number;
}

export interface QuotaPolicy {
  /** Bytes the namespace's owner may still add outside this namespace's current usage; undefined: unlimited. */
  headroom(namespaceId: bigint): Promise<bigint | undefined>;
}

/** The parent key of a row's path key, computed by MySQL (top-level entries have the root "/"). */
export const PARENT_KEY_SQL = "IF(LOCATE('/', path_key, 2) = 0, '/', LEFT(path_key, LENGTH(path_key) - LENGTH(SUBSTRING_INDEX(path_key, '/', -1)) - 1))";

/** The columns of a file row that make a FileRecord. */
export const FILE_COLUMNS = "path, is_folder, revision, size, block_list, cursor_position, modified_at, deleted";

/** A file row as the record the routes answer with. */
export function toRecord(namespaceId: bigint, r: RowDataPacket): FileRecord {
  return {
    namespaceId,
    path: r.path,
    name: r.path === ROOT ? "" : nameOf(r.path),
    isFolder: Boolean(r.is_folder),
    revision: BigInt(r.revision),
    size: BigInt(r.size),
    blocks: r.is_folder ? [] : unpackBlockList(r.block_list),
    cursor: BigInt(r.cursor_position),
    modifiedAt: r.modified_at,
    deleted: Boolean(r.deleted),
  };
}
