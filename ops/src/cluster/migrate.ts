import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Connection } from "mysql2/promise";

export interface Migration {
  version: string;
  name: string;
  up: string;
  down: string;
}

/** Reads `<version>_<name>.up.sql` / `.down.sql` pairs from a folder, oldest first. */
export function readMigrations(dir: string): Migration[] {
  const ups = readdirSync(dir).filter((f) => f.endsWith(".up.sql")).sort();
  return ups.map((file) => {
    const match = /^(\d{14})_(.+)\.up\.sql$/.exec(file);
    if (!match) throw new Error(`migration file "${file}" must be named <14-digit timestamp>_<name>.up.sql`);
    const down = file.replace(/\.up\.sql$/, ".down.sql");
    return {
      version: match[1],
      name: match[2],
      up: readFileSync(join(dir, file), "utf8"),
      down: readFileSync(join(dir, down), "utf8"),
    };
  });
}

function statements(sql: string): string[] {
  return sql
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.replace(/^\s*--.*$/gm, "").trim())
    .filter((s) => s.length > 0);
}

/** Applies every migration not yet recorded in schema_migrations; safe to run again. Returns the versions applied. */
export async function migrateUp(conn: Connection, migrations: Migration[]): Promise<string[]> {
  await conn.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version CHAR(14) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
  ) ENGINE=InnoDB`);
  const [rows] = await conn.query("SELECT version FROM schema_migrations");
  const done = new Set((rows as { version: string }[]).map((r) => r.version));
  const applied: string[] = [];
  for (const m of migrations) {
    if (done.has(m.version)) continue;
    // MariaDB commits DDL implicitly, so a migration is made of idempotent steps or runs once.
    for (const stmt of statements(m.up)) await conn.query(stmt);
    await conn.query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [m.version, m.name]);
    applied.push(m.version);
  }
  return applied;
}

/** Reverts the newest `steps` applied migrations. */
export async function migrateDown(conn: Connection, migrations: Migration[], steps = 1): Promise<string[]> {
  const [rows] = await conn.query("SELECT version FROM schema_migrations ORDER BY version DESC LIMIT ?", [steps]);
  const reverted: string[] = [];
  for (const { version } of rows as { version: string }[]) {
    const m = migrations.find((x) => x.version === version);
    if (!m) throw new Error(`no migration file for applied version ${version}`);
    for (const stmt of statements(m.down)) await conn.query(stmt);
    await conn.query("DELETE FROM schema_migrations WHERE version = ?", [version]);
    reverted.push(version);
  }
  return reverted;
}
