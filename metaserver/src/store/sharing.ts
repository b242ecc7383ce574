import type { ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { failedPrecondition, notFound } from "../errors.js";
import { descendantRange, pathKey } from "../tree/paths.js";
import { PARENT_KEY_SQL } from "./file-records.js";
import type { NamespaceTxns } from "./namespace-txn.js";

/**
 * Turns a folder of a namespace into a namespace of its own (to share it), in one transaction on
 * their common shard: the folder's entries, trash and versions move to the new namespace with
 * paths relative to it; the old namespace's journal records a mount, and the new one's journal
 * lists every entry, so members catch up from cursor 0. The new namespace's cursors start above
 * the old one's, so the revisions that moved stay unique in it.
 */
export async function splitOutNamespace(txns: NamespaceTxns, from: bigint, folder: string, into: bigint): Promise<{ entries: number }> {
  return txns.mutate(from, async (t) => {
    const row = await t.row(folder);
    if (!row || row.deleted) throw notFound(`"${folder}" does not exist`);
    if (!row.is_folder) throw failedPrecondition(`"${row.path}" is a file; only folders can be shared`);
    const key = pathKey(folder);
    const [lo, hi] = descendantRange(key);
    const [sum] = await t.query<RowDataPacket[]>(
      "SELECT COALESCE(SUM(size), 0) AS bytes FROM files WHERE namespace_id = ? AND deleted = FALSE AND is_folder = FALSE AND path_key > ? AND path_key < ?",
      [from, lo, hi],
    );
    const bytes = BigInt(sum[0].bytes);
    const keyBytes = Buffer.byteLength(key);
    await t.query(
      `UPDATE files SET namespace_id = ?, path_key = SUBSTRING(path_key, ?), path = SUBSTRING(path, ?),
         parent_key_hash = UNHEX(LEFT(SHA2(${PARENT_KEY_SQL}, 256), 32))
       WHERE namespace_id = ? AND path_key > ? AND path_key < ?`,
      [into, keyBytes + 1, [...(row.path as string)].length + 1, from, lo, hi],
    );
    await t.query(
      "UPDATE file_versions SET namespace_id = ?, path_key = SUBSTRING(path_key, ?) WHERE namespace_id = ? AND path_key > ? AND path_key < ?",
      [into, keyBytes + 1, from, lo, hi],
    );
    await t.query("DELETE FROM files WHERE namespace_id = ? AND path_key = ?", [from, key]);
    const mountCursor = t.next();
    await t.journal("mount", row.path, mountCursor, { mounted: into });
    t.usedBytes -= bytes;
    const [journaled] = await t.query<ResultSetHeader>(
      `INSERT INTO journal (namespace_id, cursor_position, path, operation, revision)
       SELECT ?, ? + ROW_NUMBER() OVER (ORDER BY path_key), path, IF(is_folder, 'mkdir', 'put'), revision
         FROM files WHERE namespace_id = ? AND deleted = FALSE`,
      [into, mountCursor, into],
    );
    await t.query(
      "INSERT INTO namespace_state (namespace_id, cursor_position, used_bytes) VALUES (?, ?, ?)",
      [into, mountCursor + BigInt(journaled.affectedRows), bytes],
    );
    return { entries: journaled.affectedRows };
  });
}

/**
 * Records in a member's root journal that the shared folder mounted at `mountPath` left their tree
 * (they left it, or the owner removed them): a delete of the mount path, so each of the member's
 * devices drops its local copy when it catches up, as it would for a folder deleted elsewhere. The
 * folder itself is untouched: it lives in its own namespace, for the owner and the other members.
 */
export async function journalUnmount(txns: NamespaceTxns, rootNamespaceId: bigint, mountPath: string): Promise<void> {
  await txns.mutate(rootNamespaceId, async (t) => {
    const cursor = t.next();
    await t.journal("delete", mountPath, cursor);
  });
}

/**
 * Records in a user's root journal that their mount of a shared folder moved (renamed in their tree
 * only): a move of the mount path, so each of their devices renames its local copy when it
 * catches up, as it would for a folder moved elsewhere. The shared namespace is untouched.
 */
export async function journalMountMove(txns: NamespaceTxns, rootNamespaceId: bigint, fromPath: string, toPath: string): Promise<void> {
  await txns.mutate(rootNamespaceId, async (t) => {
    const cursor = t.next();
    await t.journal("move", toPath, cursor, { fromPath });
  });
}
