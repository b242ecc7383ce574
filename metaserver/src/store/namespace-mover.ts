import type { Logger } from "@satchel/proto";
import { failedPrecondition, invalidArgument } from "../errors.js";
import { PLACEMENT_CACHE_MS, type NamespacePlacement } from "./placement.js";
import { inTransaction, type Pool, type RowDataPacket, type ShardSet } from "./shards.js";

/**
 * The per-namespace tables a move copies, each with its key (within the namespace) and, for rows
 * that change in place, a stamp that changes with them. Other rows are immutable once written.
 */
const TABLES = [
  { name: "files", key: ["path_key"], stamp: "cursor_position" },
  { name: "file_versions", key: ["path_key", "revision"], stamp: undefined },
  { name: "journal", key: ["cursor_position"], stamp: undefined },
  { name: "commit_requests", key: ["request_id"], stamp: undefined },
] as const;

const BATCH = 500;

export interface MoveReport {
  sourceShardId: number;
  targetShardId: number;
  rowsCopied: number;
  writesHeldMs: number;
}

/**
 * Moves a namespace to another shard while it stays online: copy everything, catch up on what
 * changed meanwhile (twice), then hold writes (the namespace's state row says "moving", so commits
 * wait), copy the last changes, switch the shard map and release writes to the new shard. Any
 * failure before the switch puts the namespace back as it was; the source copy is removed after.
 */
export async function moveNamespace(
  shards: ShardSet, placement: NamespacePlacement, logger: Logger, ns: bigint, targetShardId: number, announce: (ns: bigint) => Promise<void>,
): Promise<MoveReport> {
  if (!shards.shardIds.includes(targetShardId)) throw invalidArgument(`shard ${targetShardId} is not in the shard map (shards: ${shards.shardIds.join(", ")})`);
  placement.forgetPlacement(ns);
  const sourceShardId = await placement.shardIdOf(ns);
  if (sourceShardId === targetShardId) throw failedPrecondition(`namespace ${ns} is on shard ${targetShardId} already`);
  const src = shards.shard(sourceShardId);
  const dst = shards.shard(targetShardId);
  const [state] = await src.query<RowDataPacket[]>("SELECT state FROM namespace_state WHERE namespace_id = ?", [ns]);
  if (state[0]?.state !== "active") throw failedPrecondition(`namespace ${ns} is not active on shard ${sourceShardId} (state ${state[0]?.state ?? "missing"})`);
  const log = logger.child({ namespaceId: ns.toString(), from: sourceShardId, to: targetShardId });

  // Leftovers of an earlier, interrupted move to the same shard.
  await dst.query("DELETE FROM namespace_state WHERE namespace_id = ?", [ns]);
  let rowsCopied = 0;
  for (let pass = 0; pass < 3; pass++) {
    const n = await syncAll(src, dst, ns);
    rowsCopied += n;
    log.info({ pass, rows: n }, "namespace move: copied");
    if (n === 0) break;
  }

  const held = performance.now();
  await src.query("UPDATE namespace_state SET state = 'moving' WHERE namespace_id = ?", [ns]);
  let switched = false;
  try {
    rowsCopied += await syncAll(src, dst, ns);
    await inTransaction(dst, async (conn) => {
      const [rows] = await src.query<RowDataPacket[]>("SELECT cursor_position, used_bytes, journal_floor FROM namespace_state WHERE namespace_id = ?", [ns]);
      await conn.query(
        "INSERT INTO namespace_state (namespace_id, cursor_position, used_bytes, journal_floor, state) VALUES (?, ?, ?, ?, 'active')",
        [ns, rows[0].cursor_position, rows[0].used_bytes, rows[0].journal_floor],
      );
    });
    await placement.setShard(ns, targetShardId);
    switched = true;
    await src.query("UPDATE namespace_state SET state = 'moved' WHERE namespace_id = ?", [ns]);
  } catch (err) {
    if (!switched) {
      await dst.query("DELETE FROM namespace_state WHERE namespace_id = ?", [ns]).catch(() => undefined);
      await src.query("UPDATE namespace_state SET state = 'active' WHERE namespace_id = ?", [ns]).catch(() => undefined);
    }
    throw err;
  }
  const writesHeldMs = Math.round(performance.now() - held);
  log.info({ writesHeldMs, rowsCopied }, "namespace move: switched");
  await announce(ns);
  // The source copy goes once no metaserver can still be reading it (placement caches expire);
  // its state row stays as "moved" so that stale writers find the new shard.
  await new Promise((r) => setTimeout(r, 2 * PLACEMENT_CACHE_MS));
  for (const t of TABLES) await src.query(`DELETE FROM ${t.name} WHERE namespace_id = ?`, [ns]);
  return { sourceShardId, targetShardId, rowsCopied, writesHeldMs };
}

async function syncAll(src: Pool, dst: Pool, ns: bigint): Promise<number> {
  let n = 0;
  for (const t of TABLES) n += await syncTable(src, dst, ns, t.name, [...t.key], t.stamp);
  return n;
}

/**
 * Makes the target's rows of one namespace in one table equal the source's: rows whose key is
 * missing on either side or whose stamp differs are deleted on the target and copied again.
 */
async function syncTable(src: Pool, dst: Pool, ns: bigint, table: string, key: string[], stamp: string | undefined): Promise<number> {
  const cols = [...key, ...(stamp ? [stamp] : [])].join(", ");
  const fingerprint = (r: RowDataPacket) => [...key, ...(stamp ? [stamp] : [])].map((c) => (Buffer.isBuffer(r[c]) ? r[c].toString("hex") : String(r[c]))).join("|");
  const [have] = await dst.query<RowDataPacket[]>(`SELECT ${cols} FROM ${table} WHERE namespace_id = ?`, [ns]);
  const [want] = await src.query<RowDataPacket[]>(`SELECT ${cols} FROM ${table} WHERE namespace_id = ?`, [ns]);
  const wanted = new Set(want.map(fingerprint));
  const present = new Set(have.map(fingerprint));
  const stale = have.filter((r) => !wanted.has(fingerprint(r)));
  const missing = want.filter((r) => !present.has(fingerprint(r)));
  const keyTuple = (r: RowDataPacket) => key.map((c) => r[c]);
  const where = `namespace_id = ? AND (${key.join(", ")}) IN (?)`;
  for (let i = 0; i < stale.length; i += BATCH) {
    await dst.query(`DELETE FROM ${table} WHERE ${where}`, [ns, stale.slice(i, i + BATCH).map(keyTuple)]);
  }
  for (let i = 0; i < missing.length; i += BATCH) {
    const [rows] = await src.query<RowDataPacket[]>(`SELECT * FROM ${table} WHERE ${where}`, [ns, missing.slice(i, i + BATCH).map(keyTuple)]);
    if (rows.length === 0) continue;
    const columns = Object.keys(rows[0]);
    // A row can change between the diff and this copy; REPLACE keeps the newest, the next pass settles it.
    await dst.query(`REPLACE INTO ${table} (${columns.join(", ")}) VALUES ?`, [rows.map((r) => columns.map((c) => r[c]))]);
  }
  return missing.length + stale.length;
}
