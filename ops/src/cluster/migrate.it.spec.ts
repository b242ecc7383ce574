import { join } from "node:path";
import mysql from "mysql2/promise";
import { describe, expect, inject, it } from "vitest";
import { REPO_ROOT } from "../config.js";
import { migrateDown, migrateUp, readMigrations } from "./migrate.js";
import { mysqlTlsOf } from "./trust.js";

const { endpoints } = inject("cluster");

describe("schema migrations on the real MariaDB", () => {
  it("are re-runnable: a second run applies nothing", async () => {
    const conn = await mysql.createConnection({ uri: endpoints.directoryUrl, ...mysqlTlsOf(endpoints) });
    try {
      expect(await migrateUp(conn, readMigrations(join(REPO_ROOT, "ops", "migrations", "directory")))).toEqual([]);
      const [rows] = await conn.query("SELECT COUNT(*) AS n FROM shards");
      expect((rows as { n: number }[])[0].n).toBe(4);
    } finally {
      await conn.end();
    }
  });

  it("go down and up again in scratch databases (metaserver and blockserver alike)", async () => {
    const url = new URL(endpoints.directoryUrl);
    const conn = await mysql.createConnection({
      host: url.hostname, port: Number(url.port), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password),
      ...mysqlTlsOf(endpoints),
    });
    try {
      // The metaserver's shard and the blockserver's databases, each in a scratch database of its own.
      for (const [i, folder] of [["ops", "migrations", "shard"], ["ops", "migrations", "directory"], ["blockserver", "migrations", "index-shard"], ["blockserver", "migrations", "index-directory"]].entries()) {
        await conn.query(`DROP DATABASE IF EXISTS satchel_scratch_migrations_${i}`);
        await conn.query(`CREATE DATABASE satchel_scratch_migrations_${i}`);
        await conn.query(`USE satchel_scratch_migrations_${i}`);
        const all = readMigrations(join(REPO_ROOT, ...folder));
        expect(await migrateUp(conn, all)).toEqual(all.map((m) => m.version));
        expect(await migrateDown(conn, all, all.length)).toEqual(all.map((m) => m.version).reverse());
        const [tables] = await conn.query("SHOW TABLES");
        expect((tables as object[]).length, folder.join("/")).toBe(1); // only schema_migrations is left
        expect(await migrateUp(conn, all)).toHaveLength(all.length);
      }
    } finally {
      for (let i = 0; i < 4; i++) await conn.query(`DROP DATABASE IF EXISTS satchel_scratch_migrations_${i}`);
      await conn.end();
    }
  });
});
