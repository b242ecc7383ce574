import type { Connection, RowDataPacket } from "mysql2/promise";

/** The block index's tables in a metadata shard, before the blockserver had databases of its own. */
export const MOVED_SHARD_TABLES = ["blocks", "block_shards", "block_uploads", "repair_queue", "reference_changes_applied"] as const;
/** The blockserver's tables in the metaserver's directory, likewise. */
export const MOVED_DIRECTORY_TABLES = ["storage_nodes", "reference_sources"] as const;

async function columnsOf(conn: Connection, database: string, table: string): Promise<string[]> {
  const [rows] = await conn.query<RowDataPacket[]>(
    "SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", [database, table],
  );
  return rows.map((r) => r.name as string);
}

async function count(conn: Connection, database: string, table: string): Promise<number> {
  const [rows] = await conn.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM \`${database}\`.\`${table}\``);
  return Number(rows[0].n);
}

/**
 * Copies the rows of `tables` from database `from` into the same tables of database `to` (both on
 * the server `conn` is connected to), where `from` still has them: the in-place migration of an
 * existing cluster's block index into the blockserver's own databases. Server-side (INSERT …
 * SELECT), idempotent (INSERT IGNORE: a copy interrupted and run again completes), and checked:
 * afterwards `to` holds at least as many rows of each table as `from`. Columns are the ones both
 * sides have (a cluster behind on the old migrations gets the new columns' defaults). The caller
 * drops the old tables afterwards (the metadata shard's migrations do). Returns rows per table.
 */
export async function copyTables(conn: Connection, from: string, to: string, tables: readonly string[]): Promise<Record<string, number>> {
  const copied: Record<string, number> = {};
  for (const table of tables) {
    const old = await columnsOf(conn, from, table);
    if (old.length === 0) continue;
    const target = new Set(await columnsOf(conn, to, table));
    const cols = old.filter((c) => target.has(c)).map((c) => `\`${c}\``).join(", ");
    await conn.query(`INSERT IGNORE INTO \`${to}\`.\`${table}\` (${cols}) SELECT ${cols} FROM \`${from}\`.\`${table}\``);
    const [before, after] = [await count(conn, from, table), await count(conn, to, table)];
    if (after < before) throw new Error(`moving ${from}.${table} to ${to}: ${before} rows there, only ${after} here`);
    copied[table] = before;
  }
  return copied;
}
