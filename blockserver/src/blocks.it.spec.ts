import { createHash, randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { caOf, listShardObjects } from "@satchel/ops";

const { endpoints } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  return "ok";
};

let blocks: ReturnType<typeof createClient<typeof BlockService>>;
beforeAll(() => {
  blocks = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken }));
});

describe("blockserver against real MinIO nodes and MariaDB shards", () => {
  it("erasure-codes a block into k+m shards, one on each of k+m distinct nodes", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const hash = sha(data);
    const res = await blocks.putBlock({ hash, data });
    expect(res.alreadyStored).toBe(false);
    const hex = hash.toString("hex");
    const holders = [...(await listShardObjects(endpoints))].filter(([, keys]) => keys.some((k) => k.includes(hex)));
    expect(holders).toHaveLength(6);
    const indexes = holders.flatMap(([, keys]) => keys.filter((k) => k.includes(hex)).map((k) => Number(k.split(".").pop())));
    expect(indexes.sort()).toEqual([0, 1, 2, 3, 4, 5]);
    const back = await blocks.getBlock({ hash });
    expect(Buffer.from(back.data).equals(data)).toBe(true);
    expect((await blocks.putBlock({ hash, data })).alreadyStored).toBe(true);
  });

  it("writes a block once when many uploads of it arrive at the same time", async () => {
    const data = randomBytes(2_000_000);
    const hash = sha(data);
    const results = await Promise.all(Array.from({ length: 8 }, () => blocks.putBlock({ hash, data })));
    expect(results.filter((r) => !r.alreadyStored)).toHaveLength(1);
    const hex = hash.toString("hex");
    let objects = 0;
    for (const keys of (await listShardObjects(endpoints)).values()) objects += keys.filter((k) => k.includes(hex)).length;
    expect(objects).toBe(6);
  });

  it("rejects a block whose bytes do not match its hash with INVALID_ARGUMENT and stores nothing", async () => {
    const data = randomBytes(64 * 1024);
    const claimed = sha(randomBytes(16));
    const err = await blocks.putBlock({ hash: claimed, data }).catch((e) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(/hash mismatch/);
    const hex = claimed.toString("hex");
    for (const keys of (await listShardObjects(endpoints)).values()) expect(keys.some((k) => k.includes(hex))).toBe(false);
    expect((await blocks.hasBlocks({ hashes: [claimed] })).present).toEqual([false]);
  });

  it("answers HasBlocks for thousands of hashes in one call", async () => {
    const stored = randomBytes(1000);
    await blocks.putBlock({ hash: sha(stored), data: stored });
    const hashes = [sha(stored), ...Array.from({ length: 3000 }, () => randomBytes(32))];
    const { present } = await blocks.hasBlocks({ hashes });
    expect(present).toHaveLength(hashes.length);
    expect(present[0]).toBe(true);
    expect(present.slice(1).every((p) => !p)).toBe(true);
  });

  it("accepts a 16 MiB block and refuses a larger message with RESOURCE_EXHAUSTED", async () => {
    const max = randomBytes(16 * 1024 * 1024);
    expect((await blocks.putBlock({ hash: sha(max), data: max })).size).toBe(max.length);
    // The client's own limit would stop this before sending; use a transport without it.
    const { createGrpcTransport } = await import("@connectrpc/connect-node");
    const unlimited = createClient(BlockService, createGrpcTransport({
      baseUrl: endpoints.blockserver,
      nodeOptions: { maxSessionMemory: 256, ca: caOf(endpoints) },
      interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${endpoints.serviceToken}`), next(req))],
    }));
    const big = randomBytes(17 * 1024 * 1024);
    expect(await codeOf(unlimited.putBlock({ hash: sha(big), data: big }))).toBe(Code.ResourceExhausted);
    // Satchel's own client refuses to send it at all.
    expect(await codeOf(blocks.putBlock({ hash: sha(big), data: big }))).toBe(Code.ResourceExhausted);
    expect((await blocks.hasBlocks({ hashes: [sha(big)] })).present).toEqual([false]);
  });

  it("gives NOT_FOUND for an unknown block, INVALID_ARGUMENT for a malformed hash, UNAUTHENTICATED without a token", async () => {
    expect(await codeOf(blocks.getBlock({ hash: randomBytes(32) }))).toBe(Code.NotFound);
    expect(await codeOf(blocks.getBlock({ hash: randomBytes(5) }))).toBe(Code.InvalidArgument);
    const anonymous = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver }));
    expect(await codeOf(anonymous.hasBlocks({ hashes: [] }))).toBe(Code.Unauthenticated);
    const forged = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: "forged" }));
    expect(await codeOf(forged.hasBlocks({ hashes: [] }))).toBe(Code.Unauthenticated);
  });
});
