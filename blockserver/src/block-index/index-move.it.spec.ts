import { createHash } from "node:crypto";
import { join } from "node:path";
import mysql, { type RowDataPacket } from "mysql2/promise";
import { afterAll, describe, expect, inject, it } from "vitest";
import { indexShardOf } from "@satchel/proto";
import { REPO_ROOT, caOf, migrateAll, migrateUp, mysqlTlsOf, readMigrations, type ClusterDatabases } from "@satchel/ops";
import { BlockIndex } from "./block-index.js";

const { endpoints } = inject("cluster");

/** The first migration of the move: a cluster before it has the block index in the metaserver's databases. */
const MOVE = "20261207230000";
const SHARDS = 2;
const names: ClusterDatabases = {
  directory: "satchel_scratch_mv_directory",
  shard: (i) => `satchel_scratch_mv_shard_${i}`,
  blockDirectory: "satchel_scratch_mv_block_directory",
  blockShard: (i) => `satchel_scratch_mv_blocks_${i}`,
};
const allNames = [names.directory, names.blockDirectory, ...Array.from({ length: SHARDS }, (_, i) => [names.shard(i), names.blockShard(i)]).flat()];
const url = new URL(endpoints.directoryUrl);
const password = decodeURIComponent(url.password);
const connect = (port: number, database?: string) =>
  mysql.createConnection({ host: url.hostname, port, user: decodeURIComponent(url.username), password, ...(database ? { database } : {}), ...mysqlTlsOf(endpoints) });

/** The cluster's MariaDB servers' ports, by the placement of its metadata shards (shard i on server i mod S). */
async function serverPorts(): Promise<number[]> {
  const conn = await mysql.createConnection({ uri: endpoints.directoryUrl, ...mysqlTlsOf(endpoints) });
  try {
    const [rows] = await conn.query<RowDataPacket[]>("SELECT port FROM shards ORDER BY shard_id");
    return [...new Set(rows.map((r) => Number(r.port)))];
  } finally {
    await conn.end();
  }
}

/** Hashes that the hash rule places on index shard `i` of SHARDS. */
function hashesOn(i: number, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let k = 0; out.length < n; k++) {
    const h = createHash("sha256").update(`moved block ${k}`).digest();
    if (indexShardOf(h, SHARDS) === i) out.push(h);
  }
  return out;
}

async function dropScratch(ports: number[]): Promise<void> {
  for (const port of ports) {
    const conn = await connect(port);
    try {
      for (const db of allNames) await conn.query(`DROP DATABASE IF EXISTS \`${db}\``);
    } finally {
      await conn.end();
    }
  }
}

let ports: number[] = [];
afterAll(() => dropScratch(ports));

describe("the block index moves into the blockserver's own databases", () => {
  it("an existing cluster's index (today's schema, with data) is moved in place at start: every row, nothing left behind, and a second start changes nothing", async () => {
    ports = await serverPorts();
    expect(ports.length).toBe(2);
    await dropScratch(ports);
    const portOf = (i: number) => ports[i % ports.length];
    // A cluster as it was before the move: the metaserver's migrations up to it, with block rows.
    const before = (folder: string) => readMigrations(join(REPO_ROOT, "ops", "migrations", folder)).filter((m) => m.version < MOVE);
    const hashes = Array.from({ length: SHARDS }, (_, i) => hashesOn(i, 3));
    {
      const conn = await connect(ports[0]);
      for (const db of allNames) await conn.query(`CREATE DATABASE \`${db}\``);
      await conn.query(`USE \`${names.directory}\``);
      await migrateUp(conn, before("directory"));
      await conn.query("INSERT INTO storage_nodes (name, state) VALUES ('minio-3', 'dead'), ('minio-1', 'active')");
      await conn.query("INSERT INTO reference_sources (source, delivered_through_ms, oldest_pending_seconds) VALUES ('meta-shard-0', 12345, 1.5)");
      await conn.end();
    }
    for (let i = 0; i < SHARDS; i++) {
      const conn = await connect(portOf(i));
      await conn.query(`CREATE DATABASE IF NOT EXISTS \`${names.shard(i)}\``);
      await conn.query(`CREATE DATABASE IF NOT EXISTS \`${names.blockShard(i)}\``);
      await conn.query(`USE \`${names.shard(i)}\``);
      await migrateUp(conn, before("shard"));
      for (const [k, h] of hashes[i].entries()) {
        await conn.query(
          "INSERT INTO blocks (hash, size, data_shards, parity_shards, shard_size, state, ref_count, lost_at) VALUES (?, 4096, 4, 2, 1024, 'live', ?, ?)",
          [h, k + 1, k === 2 ? new Date() : null],
        );
        for (let s = 0; s < 6; s++) await conn.query("INSERT INTO block_shards (hash, shard_index, node, checksum, state) VALUES (?, ?, ?, ?, ?)", [h, s, `minio-${s}`, 1000 + s, s === 5 ? "missing" : "ok"]);
        await conn.query("INSERT INTO block_uploads (hash, user_id) VALUES (?, 7)", [h]);
      }
      await conn.query("INSERT INTO repair_queue (hash, reason, attempts) VALUES (?, 'shard-state sweep', 2)", [hashes[i][0]]);
      await conn.query("INSERT INTO reference_changes_applied (source, sequence) VALUES (?, 41), (?, 42)", [`meta-shard-${i}`, `meta-shard-${i}`]);
      await conn.end();
    }

    const log: string[] = [];
    const target = { host: url.hostname, ports, password, ca: caOf(endpoints), shards: SHARDS, names };
    await migrateAll(target, (l) => log.push(l));
    expect(log.filter((l) => l.startsWith("moved")).length).toBe(1 + SHARDS);

    const tablesOf = async (port: number, db: string) => {
      const conn = await connect(port);
      const [rows] = await conn.query<RowDataPacket[]>("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY t", [db]);
      await conn.end();
      return rows.map((r) => r.t as string);
    };
    // Nothing of the block index is left in the metaserver's databases; its own tables stay.
    for (let i = 0; i < SHARDS; i++) {
      const left = await tablesOf(portOf(i), names.shard(i));
      expect(left).toContain("files");
      expect(left).toContain("block_reference_outbox");
      for (const t of ["blocks", "block_shards", "block_uploads", "repair_queue", "reference_changes_applied"]) expect(left).not.toContain(t);
    }
    expect(await tablesOf(ports[0], names.directory)).not.toContain("storage_nodes");
    expect(await tablesOf(ports[0], names.directory)).not.toContain("reference_sources");

    // The blockserver reads every moved row through its own index.
    const rowCounts = async () => {
      const counts: number[] = [];
      for (let i = 0; i < SHARDS; i++) {
        const conn = await connect(portOf(i), names.blockShard(i));
        for (const t of ["blocks", "block_shards", "block_uploads", "repair_queue", "reference_changes_applied"]) {
          const [rows] = await conn.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${t}`);
          counts.push(Number(rows[0].n));
        }
        await conn.end();
      }
      return counts;
    };
    expect(await rowCounts()).toEqual([3, 18, 3, 1, 2, 3, 18, 3, 1, 2]);
    const blockDirectoryUrl = `mysql://${url.username}:${url.password}@${url.hostname}:${ports[0]}/${names.blockDirectory}`;
    const ca = caOf(endpoints);
    const index = await BlockIndex.open(blockDirectoryUrl, ca && { ca });
    try {
      for (let i = 0; i < SHARDS; i++) {
        for (const [k, h] of hashes[i].entries()) {
          const b = await index.get(h);
          expect(b).toMatchObject({ size: 4096, dataShards: 4, parityShards: 2, state: "live", lost: k === 2 });
          expect(b!.shards.map((s) => [s.index, s.node, s.state])).toEqual([0, 1, 2, 3, 4, 5].map((s) => [s, `minio-${s}`, s === 5 ? "missing" : "ok"]));
        }
      }
      expect(await index.deadNodes()).toEqual(["minio-3"]);
      // Every metadata shard's relay is a source collection waits for: the one that reported keeps its claim.
      const sources = await index.referenceSources();
      expect(sources.map((s) => [s.source, s.deliveredThroughMs, s.silentSeconds === Infinity])).toEqual([["meta-shard-0", 12345, false], ["meta-shard-1", 0, true]]);
    } finally {
      await index.close();
    }

    // A second start moves nothing and applies nothing.
    const again: string[] = [];
    await migrateAll(target, (l) => again.push(l));
    expect(again).toEqual([]);
    expect(await rowCounts()).toEqual([3, 18, 3, 1, 2, 3, 18, 3, 1, 2]);
  });
});
