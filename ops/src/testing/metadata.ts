import { createHash } from "node:crypto";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import mysql, { type Connection, type RowDataPacket } from "mysql2/promise";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { MetaService, type BlockRef } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { mysqlTlsOf } from "../cluster/trust.js";
import { signIn } from "./accounts.js";
import { ServiceProcesses } from "./service-process.js";

/** One signed-in device of an account: its metaserver and blockserver clients. */
export interface Device {
  name: string;
  token: string;
  meta: Client<typeof MetaService>;
  blocks: Client<typeof BlockService>;
}

export async function deviceOf(
  endpoints: ClusterEndpoints, account: { username: string; password: string }, name: string, metaserverUrl = endpoints.metaserver,
): Promise<Device> {
  const token = await signIn(endpoints, account, name);
  return {
    name, token,
    meta: createClient(MetaService, createSatchelTransport({ baseUrl: metaserverUrl, token })),
    blocks: createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token })),
  };
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest();

/**
 * Stores content as blocks of at most blockSize bytes and returns their references, in order,
 * each with the grant the upload earned (what a commit presents).
 */
export async function storeBlocks(dev: Device, data: Buffer, blockSize = 64 * 1024): Promise<{ hash: Uint8Array; size: number; grant: Uint8Array }[]> {
  const refs: { hash: Uint8Array; size: number; grant: Uint8Array }[] = [];
  for (let at = 0; at < data.length; at += blockSize) {
    const block = data.subarray(at, at + blockSize);
    const { grant } = await dev.blocks.putBlock({ hash: sha256(block), data: block });
    refs.push({ hash: sha256(block), size: block.length, grant });
  }
  return refs;
}

/** A version's content, block by block. */
export async function readBack(dev: Device, blocks: Pick<BlockRef, "hash" | "grant">[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const b of blocks) parts.push(Buffer.from((await dev.blocks.getBlock({ hash: b.hash, grant: b.grant })).data));
  return Buffer.concat(parts);
}

/** The error a call failed with; the test fails when the call succeeds. */
export async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** The gRPC code a call ends with, by name ("OK" when it succeeds). */
export async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}

// Direct access to the directory and the metadata shards, for checks the API cannot make.

const dbOptions = (endpoints: ClusterEndpoints) => {
  const url = new URL(endpoints.directoryUrl);
  return { user: decodeURIComponent(url.username), password: decodeURIComponent(url.password), supportBigNumbers: true, bigNumberStrings: true, ...mysqlTlsOf(endpoints) };
};

export async function openDirectory(endpoints: ClusterEndpoints): Promise<Connection> {
  const url = new URL(endpoints.directoryUrl);
  return mysql.createConnection({ ...dbOptions(endpoints), host: url.hostname, port: Number(url.port), database: url.pathname.slice(1) });
}

export async function openShard(endpoints: ClusterEndpoints, directory: Connection, shardId: number): Promise<Connection> {
  const [rows] = await directory.query<RowDataPacket[]>("SELECT host, port, database_name FROM shards WHERE shard_id = ?", [shardId]);
  if (rows.length === 0) throw new Error(`shard ${shardId} is not in the shard map`);
  return mysql.createConnection({ ...dbOptions(endpoints), host: rows[0].host, port: Number(rows[0].port), database: rows[0].database_name });
}

/** A connection to the shard that holds a namespace, as the directory maps it. */
export async function openShardOf(endpoints: ClusterEndpoints, namespaceId: bigint): Promise<Connection> {
  const directory = await openDirectory(endpoints);
  try {
    const [rows] = await directory.query<RowDataPacket[]>("SELECT shard_id FROM namespaces WHERE namespace_id = ?", [namespaceId]);
    if (rows.length === 0) throw new Error(`namespace ${namespaceId} is not in the shard map`);
    return await openShard(endpoints, directory, Number(rows[0].shard_id));
  } finally {
    await directory.end();
  }
}

/**
 * Everything that must hold for one namespace on its shard, after any crash or move, as a list of
 * violations (empty when consistent): an active state row, journal cursors counting up by one
 * from the floor to the namespace's cursor, a version and a journal entry for every current file,
 * and used_bytes equal to the sizes of the current files.
 */
export async function shardViolations(shard: Connection, ns: bigint): Promise<{ violations: string[]; cursor: bigint }> {
  const violations: string[] = [];
  const [[state]] = await shard.query<RowDataPacket[]>("SELECT cursor_position, used_bytes, journal_floor, state FROM namespace_state WHERE namespace_id = ?", [ns]);
  if (!state) return { violations: [`namespace ${ns} has no namespace_state row`], cursor: 0n };
  if (state.state !== "active") violations.push(`namespace_state.state is ${state.state}`);
  const [journal] = await shard.query<RowDataPacket[]>("SELECT cursor_position FROM journal WHERE namespace_id = ? ORDER BY cursor_position", [ns]);
  const floor = BigInt(state.journal_floor);
  journal.forEach((j, i) => {
    if (BigInt(j.cursor_position) !== floor + BigInt(i) + 1n) violations.push(`journal cursor #${i} is ${j.cursor_position}, expected ${floor + BigInt(i) + 1n} (gap or duplicate)`);
  });
  const last = journal.length ? BigInt(journal.at(-1)!.cursor_position) : floor;
  if (last !== BigInt(state.cursor_position)) violations.push(`namespace_state.cursor_position ${state.cursor_position} != MAX(journal cursor) ${last}`);
  const [unversioned] = await shard.query<RowDataPacket[]>(
    `SELECT f.path, f.revision FROM files f LEFT JOIN file_versions v ON v.namespace_id = f.namespace_id AND v.path_key = f.path_key AND v.revision = f.revision
      WHERE f.namespace_id = ? AND f.is_folder = FALSE AND v.revision IS NULL`, [ns],
  );
  for (const r of unversioned) violations.push(`file ${r.path} at revision ${r.revision} has no file_versions row`);
  const [unjournaled] = await shard.query<RowDataPacket[]>(
    `SELECT f.path, f.revision FROM files f LEFT JOIN journal j ON j.namespace_id = f.namespace_id AND j.cursor_position = f.revision AND j.revision = f.revision
      WHERE f.namespace_id = ? AND j.cursor_position IS NULL`, [ns],
  );
  for (const r of unjournaled) violations.push(`${r.path} at revision ${r.revision} has no journal entry`);
  const [[usage]] = await shard.query<RowDataPacket[]>(
    "SELECT COALESCE(SUM(size), 0) AS bytes FROM files WHERE namespace_id = ? AND deleted = FALSE AND is_folder = FALSE", [ns],
  );
  if (BigInt(usage.bytes) !== BigInt(state.used_bytes)) violations.push(`used_bytes ${state.used_bytes} != sum of current file sizes ${usage.bytes}`);
  return { violations, cursor: BigInt(state.cursor_position) };
}

/**
 * Extra metaserver processes beside the cluster's (to kill one, or run one with other settings),
 * on ports offset from the cluster's metaserver port; stopAll() ends them.
 */
export class MetaserverProcesses extends ServiceProcesses {
  constructor(endpoints: ClusterEndpoints, stateDir: string) {
    super("metaserver", endpoints, stateDir);
  }
}
