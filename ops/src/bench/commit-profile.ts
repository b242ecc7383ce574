#!/usr/bin/env node
/**
 * Where a commit's time goes, statement by statement, against a running local cluster (bash
 * ops/up.sh): MariaDB's general log is turned on on every server of the cluster for one
 * one-block CommitFile and one empty-file CommitFile (after a few to warm the caches), and every
 * statement any service sent during each call, and after it (the reference relay's), is listed
 * with its time from the call's start, its server and connection, and which service sent it.
 *   node ops/dist/bench/commit-profile.js [commits per kind=1]
 * Prints figure lines too: round trips and statements per commit of each kind.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createClient } from "@connectrpc/connect";
import mysql, { type RowDataPacket } from "mysql2/promise";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { readClusterFile } from "../cluster/cluster.js";
import { loadClusterConfig } from "../config.js";
import { createAccount, signIn } from "../testing/accounts.js";
import { figureLine } from "./figures.js";

/** Who sent a statement, by the tables it names. */
export function senderOf(sql: string): string {
  if (/\bblock_reference_outbox\b|\breference_sources\b/i.test(sql) && !/^\s*(SET TRANSACTION|INSERT INTO files)/i.test(sql)) return "metaserver, reference relay";
  if (/\b(block_shards|blocks|block_uploads|repair_queue|reference_changes_applied|storage_nodes)\b/i.test(sql)) return "blockserver";
  if (/\b(files|file_versions|journal|namespace_state|commit_requests)\b/i.test(sql)) return "metaserver, shard";
  if (/\b(users|devices|namespaces|mounts|shards|share_links)\b/i.test(sql)) return "metaserver, directory";
  return "?";
}

/** Statements in one round trip (a multi-statement query is one round trip). */
export function statementsIn(sql: string): number {
  return sql.split(/;\s*(?=(?:SET|START|SELECT|INSERT|UPDATE|DELETE|COMMIT|ROLLBACK)\b)/i).filter((s) => s.trim() !== "").length;
}

interface Logged {
  at: number;
  server: string;
  thread: number;
  sql: string;
}

async function main(): Promise<void> {
  const perKind = Number(process.argv[2] ?? 1);
  const config = loadClusterConfig();
  const endpoints = readClusterFile(config.stateDir);
  const sockets = readdirSync(config.stateDir).filter((d) => /^mariadb-\d+$/.test(d)).map((d) => ({ server: d, socket: join(config.stateDir, d, "mysqld.sock") })).filter((s) => existsSync(s.socket));
  const admins = await Promise.all(sockets.map(async (s) => ({ ...s, conn: await mysql.createConnection({ socketPath: s.socket, user: "root" }) })));

  const account = await createAccount(endpoints, "profile");
  const token = await signIn(endpoints, account, "profile");
  const transport = createSatchelTransport({ baseUrl: endpoints.metaserver, token });
  const meta = createClient(MetaService, transport);
  const blocks = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token }));
  const data = randomBytes(4096);
  const hash = createHash("sha256").update(data).digest();
  const { grant } = await blocks.putBlock({ hash, data });
  const run = Date.now().toString(36);
  const commit = (kind: "block" | "empty", i: number) => kind === "block"
    ? meta.commitFile({ path: `/profile-${run}/b-${i}`, blocks: [{ hash, size: 4096, grant }], size: 4096n })
    : meta.commitFile({ path: `/profile-${run}/e-${i}`, size: 0n });
  // Warm: the mount cache, the connection pools, the blockserver's and the relay's first calls.
  for (let i = 0; i < 5; i++) await commit("block", 1000 + i);
  for (let i = 0; i < 5; i++) await commit("empty", 1000 + i);
  await new Promise((r) => setTimeout(r, 1500));

  const now = async () => {
    const [rows] = await admins[0].conn.query<RowDataPacket[]>("SELECT UNIX_TIMESTAMP(NOW(6)) * 1000 AS ms");
    return Number(rows[0].ms);
  };
  for (const a of admins) {
    await a.conn.query("SET GLOBAL log_output = 'TABLE'");
    await a.conn.query("TRUNCATE mysql.general_log");
    await a.conn.query("SET GLOBAL general_log = 1");
  }
  const windows: { kind: string; from: number; to: number; ms: number }[] = [];
  try {
    for (const kind of ["block", "empty"] as const) {
      for (let i = 0; i < perKind; i++) {
        const from = await now();
        const t = performance.now();
        await commit(kind, i);
        const ms = performance.now() - t;
        windows.push({ kind, from, to: await now(), ms });
        // What follows a commit (the relay sends its reference to the blockserver) before the next.
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  } finally {
    for (const a of admins) await a.conn.query("SET GLOBAL general_log = 0");
  }
  const logged: Logged[] = [];
  for (const a of admins) {
    const [rows] = await a.conn.query<RowDataPacket[]>(
      "SELECT UNIX_TIMESTAMP(event_time) * 1000 AS at, thread_id, CONVERT(argument USING utf8mb4) AS sql_text FROM mysql.general_log " +
        "WHERE command_type IN ('Query', 'Execute') AND thread_id <> CONNECTION_ID() ORDER BY event_time",
    );
    for (const r of rows) logged.push({ at: Number(r.at), server: a.server, thread: Number(r.thread_id), sql: String(r.sql_text) });
  }
  for (const a of admins) await a.conn.end();
  logged.sort((x, y) => x.at - y.at);
  // START TRANSACTION, COMMIT and the like belong to whoever else used that connection.
  const byThread = new Map<string, string>();
  for (const l of logged) if (senderOf(l.sql) !== "?") byThread.set(`${l.server}#${l.thread}`, senderOf(l.sql));
  const sender = (l: Logged) => (senderOf(l.sql) === "?" ? byThread.get(`${l.server}#${l.thread}`) ?? "?" : senderOf(l.sql));
  const totals = new Map<string, { trips: number; statements: number; n: number }>();
  for (const [i, w] of windows.entries()) {
    const next = windows[i + 1]?.from ?? Infinity;
    const during = logged.filter((l) => l.at >= w.from && l.at <= w.to);
    const after = logged.filter((l) => l.at > w.to && l.at < next);
    const label = w.kind === "block" ? "one-block" : "empty-file";
    console.log(`\n${label} CommitFile: ${w.ms.toFixed(1)} ms; during it ${during.length} round trips to MariaDB (${during.reduce((n, l) => n + statementsIn(l.sql), 0)} statements):`);
    for (const l of during) console.log(`  +${(l.at - w.from).toFixed(1).padStart(6)} ms  ${l.server} #${l.thread}  [${sender(l)}]  ${l.sql.replace(/\s+/g, " ").slice(0, 220)}`);
    console.log(`after it, before the next (the reference relay, background work): ${after.length} round trips`);
    for (const l of after) console.log(`  +${(l.at - w.from).toFixed(1).padStart(6)} ms  ${l.server} #${l.thread}  [${sender(l)}]  ${l.sql.replace(/\s+/g, " ").slice(0, 160)}`);
    const t = totals.get(w.kind) ?? { trips: 0, statements: 0, n: 0 };
    t.trips += during.length;
    t.statements += during.reduce((n, l) => n + statementsIn(l.sql), 0);
    t.n++;
    totals.set(w.kind, t);
  }
  for (const [kind, t] of totals) {
    const name = kind === "block" ? "commit_1block" : "commit_empty";
    console.log(figureLine("satchel", `${name}_db_round_trips`, t.trips / t.n, "count"));
    console.log(figureLine("satchel", `${name}_db_statements`, t.statements / t.n, "count"));
  }
  process.exit(0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
