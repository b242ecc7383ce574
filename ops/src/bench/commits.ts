#!/usr/bin/env node
/**
 * Metaserver commit benchmark against a running local cluster (bash ops/up.sh), all in one run:
 * commits per second and commit latency (p50/p99) with 1, 8 and 64 concurrent clients, each its
 * own user (so namespaces spread over the shards) on its own HTTP/2 connection, next to a plain
 * mysql2 loop doing one single-row INSERT transaction per "commit" against the same MariaDB
 * shards with the same concurrency.
 *   node ops/dist/bench/commits.js [seconds per level=5] [levels=1,8,64]
 * One client alone exceeds the default per-user limit on changes (200/s): for capacity figures
 * start the cluster with it raised, e.g. SATCHEL_RATE_LIMITS='{"commits":{"perSecond":1e6,"burst":1e6}}'.
 * Two kinds of Satchel commit are measured: a one-block file (ReserveBlocks on the blockserver,
 * then the shard transaction), an empty file (the shard transaction alone), and CommitBatch of
 * BATCH_FILES one-block files per call (figures in files per second). The clients are
 * stock grpc-js clients (the lightest Node gRPC client here), one connection each.
 */

/** A CommitFile caller on its own connection, as any stock gRPC client would call it. */
class CommitClient {
  private readonly client: grpc.Client;
  private readonly metadata = new grpc.Metadata();

  constructor(target: string, token: string, credentials: grpc.ChannelCredentials) {
    this.client = new grpc.Client(target, credentials, { "grpc.use_local_subchannel_pool": 1 });
    this.metadata.set("authorization", `Bearer ${token}`);
  }

  commitFile(req: MessageInitShape<typeof CommitFileRequestSchema>): Promise<CommitFileResponse> {
    return this.unary("CommitFile", CommitFileRequestSchema, CommitFileResponseSchema, req);
  }

  commitBatch(req: MessageInitShape<typeof CommitBatchRequestSchema>): Promise<CommitBatchResponse> {
    return this.unary("CommitBatch", CommitBatchRequestSchema, CommitBatchResponseSchema, req);
  }

  private unary<I extends DescMessage, O extends DescMessage>(method: string, input: I, output: O, req: MessageInitShape<I>): Promise<MessageShape<O>> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        `/satchel.meta.v1.MetaService/${method}`,
        (r: MessageShape<I>) => Buffer.from(toBinary(input, r)),
        (b: Buffer) => fromBinary(output, b),
        create(input, req),
        this.metadata,
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import mysql, { type RowDataPacket } from "mysql2/promise";
import { withRetry } from "@satchel/client-sdk";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import {
  CommitBatchRequestSchema, CommitBatchResponseSchema, CommitFileRequestSchema, CommitFileResponseSchema, type CommitBatchResponse, type CommitFileResponse,
} from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { readClusterFile, type ClusterEndpoints } from "../cluster/cluster.js";
import { grpcCredentialsOf, mysqlTlsOf } from "../cluster/trust.js";
import { loadClusterConfig } from "../config.js";
import { createAccount, signIn } from "../testing/accounts.js";
import { figureLine } from "./figures.js";

/** Files per CommitBatch call (the figure: a batch of 100). */
const BATCH_FILES = 100;

interface LevelResult {
  commits: number;
  seconds: number;
  p50: number;
  p99: number;
  errors: number;
}

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN);

/** Runs `workers` loops of `op` for `seconds`, timing every call. */
async function drive(workers: number, seconds: number, op: (worker: number, i: number) => Promise<void>): Promise<LevelResult> {
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; performance.now() < deadline; i++) {
      const t = performance.now();
      try {
        await op(w, i);
        latencies.push(performance.now() - t);
      } catch (err) {
        if (++errors <= 3) console.error(`  error: ${(err as Error).message}`);
      }
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { commits: latencies.length, seconds: elapsed, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), errors };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const levels = (process.argv[3] ?? "1,8,64").split(",").map(Number);
  const config = loadClusterConfig();
  const endpoints = readClusterFile(config.stateDir);
  const maxClients = Math.max(...levels);

  console.log(`creating ${maxClients} users (scrypt makes this take a few seconds)...`);
  const clients: { meta: CommitClient; blocks: Client<typeof BlockService> }[] = [];
  for (let i = 0; i < maxClients; i += 8) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(8, maxClients - i) }, async () => {
      const token = await signIn(endpoints, await createAccount(endpoints, "bench"), "bench");
      return { meta: new CommitClient(new URL(endpoints.metaserver).host, token, grpcCredentialsOf(endpoints)), blocks: createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token })) };
    }))));
  }
  // A small block per client, uploaded once by it, that its one-block commits reference (so
  // commits measure metadata, and clients do not all contend for one block's row). Its grant is
  // what a commit presents; HasBlocks renews it before each level (grants last minutes).
  const blocks = Array.from({ length: maxClients }, () => randomBytes(4096));
  const hashes = blocks.map((b) => createHash("sha256").update(b).digest());
  // (64 uploads at once may meet contention on the block index: ABORTED, retried as the SDK does.)
  const grants = await Promise.all(blocks.map(async (data, i) => (await withRetry(() => clients[i].blocks.putBlock({ hash: hashes[i], data }))).grant));
  const renewGrants = () => Promise.all(clients.map(async (c, i) => {
    grants[i] = (await c.blocks.hasBlocks({ hashes: [hashes[i]] })).grants[0];
  }));

  const directory = await mysql.createConnection({ uri: endpoints.directoryUrl, ...mysqlTlsOf(endpoints) });
  const [shards] = await directory.query<RowDataPacket[]>("SELECT shard_id, host, port, database_name FROM shards ORDER BY shard_id");
  await directory.end();
  const url = new URL(endpoints.directoryUrl);
  const pools = shards.map((s) => mysql.createPool({
    host: s.host, port: Number(s.port), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password),
    database: s.database_name, connectionLimit: maxClients, ...mysqlTlsOf(endpoints),
  }));
  for (const p of pools) {
    await p.query("CREATE TABLE IF NOT EXISTS bench_raw_commits (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, worker INT NOT NULL, body VARBINARY(64) NOT NULL) ENGINE=InnoDB");
  }

  const run = Date.now().toString(36);
  const rows: string[] = [];
  const line = (what: string, n: number, r: LevelResult, raw?: LevelResult) => {
    const rate = r.commits / r.seconds;
    const [tool, metric] = what.startsWith("raw") ? ["mysql2", "txn"] : ["satchel", what.includes("empty") ? "commit_empty" : what.includes("batch") ? "batch_files" : "commit_1block"];
    console.log(figureLine(tool, `${metric}_c${n}_per_s`, rate, metric === "batch_files" ? "files/s" : "commits/s"));
    console.log(figureLine(tool, `${metric}_c${n}_p50_ms`, r.p50, "ms"));
    console.log(figureLine(tool, `${metric}_c${n}_p99_ms`, r.p99, "ms"));
    const ratio = raw ? ` ${((100 * rate) / (raw.commits / raw.seconds)).toFixed(0).padStart(5)}%` : "";
    rows.push(`${what.padEnd(22)} ${String(n).padStart(3)}  ${rate.toFixed(0).padStart(8)}/s  p50 ${r.p50.toFixed(1).padStart(6)} ms  p99 ${r.p99.toFixed(1).padStart(6)} ms  errors ${r.errors}${ratio}`);
  };
  for (const n of levels) {
    console.log(`level ${n}: raw mysql2...`);
    const raw = await drive(n, seconds, async (w) => {
      const conn = await pools[w % pools.length].getConnection();
      try {
        await conn.beginTransaction();
        await conn.query("INSERT INTO bench_raw_commits (worker, body) VALUES (?, ?)", [w, hashes[w]]);
        await conn.commit();
      } finally {
        conn.release();
      }
    });
    console.log(`level ${n}: satchel one-block commits...`);
    await renewGrants();
    const withBlock = await drive(n, seconds, async (w, i) => {
      const res = await clients[w].meta.commitFile({ path: `/bench-${run}/b-${n}-${i}`, blocks: [{ hash: hashes[w], size: 4096, grant: grants[w] }], size: 4096n });
      if (!res.file) throw new Error("commit answered missing blocks");
    });
    console.log(`level ${n}: satchel empty-file commits...`);
    const empty = await drive(n, seconds, async (w, i) => {
      await clients[w].meta.commitFile({ path: `/bench-${run}/e-${n}-${i}`, size: 0n });
    });
    console.log(`level ${n}: satchel CommitBatch of ${BATCH_FILES} one-block files...`);
    await renewGrants();
    const batched = await drive(n, seconds, async (w, i) => {
      const { results } = await clients[w].meta.commitBatch({
        changes: Array.from({ length: BATCH_FILES }, (_, f) => ({
          change: { case: "commit", value: { path: `/bench-${run}/batch-${n}-${i}/f-${f}`, blocks: [{ hash: hashes[w], size: 4096, grant: grants[w] }], size: 4096n } },
        })),
      });
      if (results.some((r) => r.code !== 0 || (r.result.case === "commit" && !r.result.value.file))) throw new Error("a batch change was refused");
    });
    line("raw mysql2 insert txn", n, raw);
    line("satchel 1-block commit", n, withBlock, raw);
    line("satchel empty commit", n, empty, raw);
    line(`satchel batch x${BATCH_FILES} (files)`, n, { ...batched, commits: batched.commits * BATCH_FILES }, raw);
  }
  for (const p of pools) {
    await p.query("DROP TABLE IF EXISTS bench_raw_commits");
    await p.end();
  }
  for (const c of clients) c.meta.close();
  console.log(`\n${"".padEnd(22)} clients   commits/s    latency                      (% of raw mysql2, same run)`);
  for (const r of rows) console.log(r);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
