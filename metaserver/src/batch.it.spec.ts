import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import {
  BatchChangeSchema, MetaAdminService, Operation, Role, type BatchChange, type BatchResult, type JournalEntry,
} from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { SatchelClient } from "@satchel/client-sdk";
import { createAccount, deviceOf as sharedDeviceOf, storeBlocks, type Device, type TestAccount } from "@satchel/ops";

/**
 * CommitBatch (issue 22) on the real cluster: many changes in one call, each with its own result,
 * applied in order in one transaction per namespace; refused changes write nothing.
 */
const { endpoints } = inject("cluster");
const metaAdmin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: endpoints.serviceToken }));
const deviceOf = (account: TestAccount, name: string) => sharedDeviceOf(endpoints, account, name);
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();

type Change = BatchChange["change"];
const commit = (path: string, blocks: { hash: Uint8Array; size: number; grant?: Uint8Array }[], opts: { parentRevision?: bigint; requestId?: string; size?: bigint } = {}): Change => ({
  case: "commit",
  value: {
    $typeName: "satchel.meta.v1.CommitFileRequest", path, blocks: blocks.map((b) => ({ $typeName: "satchel.meta.v1.BlockRef", hash: b.hash, size: b.size, grant: b.grant ?? new Uint8Array(0) })),
    size: opts.size ?? BigInt(blocks.reduce((n, b) => n + b.size, 0)), parentRevision: opts.parentRevision ?? 0n, requestId: opts.requestId ?? "",
  },
});
const mkdir = (path: string): Change => ({ case: "createFolder", value: { $typeName: "satchel.meta.v1.CreateFolderRequest", path } });
const del = (path: string, parentRevision = 0n): Change => ({ case: "delete", value: { $typeName: "satchel.meta.v1.DeleteRequest", path, parentRevision, seenCursor: 0n } });
const move = (fromPath: string, toPath: string): Change => ({ case: "move", value: { $typeName: "satchel.meta.v1.MoveRequest", fromPath, toPath } });

async function batch(dev: Device, changes: Change[]): Promise<BatchResult[]> {
  const { results } = await dev.meta.commitBatch({ changes: changes.map((change) => create(BatchChangeSchema, { change })) });
  expect(results).toHaveLength(changes.length);
  return results;
}

async function rootOf(dev: Device): Promise<{ namespaceId: bigint; cursor: bigint }> {
  const root = (await dev.meta.listNamespaces({})).namespaces.find((n) => n.path === "/")!;
  return { namespaceId: root.namespaceId, cursor: root.cursor };
}

async function journalAfter(dev: Device, namespaceId: bigint, cursor: bigint): Promise<JournalEntry[]> {
  const res = await dev.meta.listDelta({ namespaceId, cursor, pageSize: 0 });
  expect(res.hasMore).toBe(false);
  return res.entries;
}

const exists = (dev: Device, path: string) => dev.meta.getFileMetadata({ path }).then((r) => r.file!, () => undefined);
const committed = (r: BatchResult) => (r.result.case === "commit" ? r.result.value : undefined);

/** Satchel's RPCs of one method served by the cluster's metaserver so far (every code). */
async function served(method: string): Promise<number> {
  const text = await (await fetch(endpoints.metrics.metaserver)).text();
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^satchel_metaserver_rpc_requests_total\\{method="satchel\\.meta\\.v1\\.MetaService/${method}",code="[^"]+"\\} (\\S+)$`, "gm"))) n += Number(m[1]);
  return n;
}

describe("CommitBatch", () => {
  it("a batch of mixed changes: each gets the result its single call would, refused ones write nothing, the journal has only what applied, in order", async () => {
    const [account, other] = await Promise.all([createAccount(endpoints, "batch"), createAccount(endpoints, "batch-other")]);
    const [dev, otherDev] = await Promise.all([deviceOf(account, "laptop"), deviceOf(other, "desktop")]);
    // The other user shares a folder with this account as a viewer.
    await otherDev.meta.createFolder({ path: "/Theirs" });
    await otherDev.meta.shareFolder({ path: "/Theirs", username: account.username, role: Role.VIEWER });
    const doc = await storeBlocks(dev, randomBytes(30_000));
    const base = await dev.meta.commitFile({ path: "/doc.txt", blocks: doc, size: 30_000n });
    const { namespaceId, cursor: before } = await rootOf(dev);

    const fresh = await storeBlocks(dev, randomBytes(20_000));
    const stale = await storeBlocks(dev, randomBytes(10_000));
    const othersBlock = await storeBlocks(otherDev, randomBytes(5_000));
    const neverSent = [{ hash: sha(randomBytes(64)), size: 64 }];
    const changes: Change[] = [
      /* 0 */ commit("/new/a.txt", fresh, { requestId: "batch-a" }),
      /* 1 */ commit("/doc.txt", stale, { parentRevision: base.file!.revision + 1000n }),
      /* 2 */ commit("/ghost.txt", neverSent),
      /* 3 */ commit("/bad.txt", fresh, { size: 1n }),
      /* 4 */ mkdir("/new"),
      /* 5 */ mkdir("/made"),
      /* 6 */ del("/nope"),
      /* 7 */ del("/doc.txt", base.file!.revision + 7n),
      /* 8 */ move("/new/a.txt", "/made/a.txt"),
      /* 9 */ commit("/Theirs/x.txt", fresh),
      /* 10 */ commit("/stolen.txt", othersBlock),
      /* 11 */ commit("/new/a.txt", fresh, { requestId: "batch-a" }),
      /* 12 */ { case: undefined, value: undefined },
    ];
    const results = await batch(dev, changes);
    expect(results.map((r) => Code[r.code])).toEqual([
      "0", "0", "0", "InvalidArgument", "AlreadyExists", "0", "NotFound", "FailedPrecondition", "0", "PermissionDenied", "0", "0", "InvalidArgument",
    ].map((c) => (c === "0" ? Code[0] : c)));
    // 0: committed; 11 (the same request id, later in the batch) answers the same version.
    expect(committed(results[0])!.file!.path).toBe("/new/a.txt");
    expect(committed(results[11])!.file!.revision).toBe(committed(results[0])!.file!.revision);
    // 1: a stale parent makes a conflicted copy, as CommitFile does.
    expect(committed(results[1])!.conflict).toBe(true);
    expect(committed(results[1])!.file!.path).toMatch(/^\/doc \(laptop's conflicted copy \d{4}-\d{2}-\d{2}\)\.txt$/);
    // 2 and 10: a hash never sent, and another user's block with that user's grant, are missing blocks.
    expect(committed(results[2])!.missingBlocks.map((h) => Buffer.from(h).toString("hex"))).toEqual([neverSent[0].hash.toString("hex")]);
    expect(committed(results[10])!.missingBlocks).toHaveLength(othersBlock.length);
    expect(committed(results[2])!.file).toBeUndefined();
    expect(results[3].message).toMatch(/size 1 does not equal the sum of the block sizes/);
    expect(results[4].message).toMatch(/"\/new" already exists as a folder/);
    expect(results[9].message).toMatch(/shared with you as a viewer/);
    expect(results[12].message).toMatch(/names no change/);
    expect(results[8].result.case === "move" && results[8].result.value.entry!.path).toBe("/made/a.txt");

    // Nothing of a refused change exists; the others do, as the batch left them.
    for (const p of ["/ghost.txt", "/bad.txt", "/stolen.txt", "/new/a.txt"]) expect(await exists(dev, p), p).toBeUndefined();
    expect((await exists(dev, "/doc.txt"))!.revision).toBe(base.file!.revision);
    expect((await exists(dev, "/made/a.txt"))!.size).toBe(20_000n);
    expect(await exists(otherDev, "/Theirs/x.txt")).toBeUndefined();
    // The journal holds exactly the applied changes, in request order, on consecutive cursors.
    const entries = await journalAfter(dev, namespaceId, before);
    expect(entries.map((e) => [Operation[e.operation], e.path])).toEqual([
      ["MKDIR", "/new"], ["PUT", "/new/a.txt"], ["PUT", committed(results[1])!.file!.path], ["MKDIR", "/made"], ["MOVE", "/made/a.txt"],
    ]);
    expect(entries.map((e) => e.cursor)).toEqual(entries.map((_, i) => before + BigInt(i + 1)));

    // The whole batch again: the commit with a request id answers the same version and adds nothing.
    const again = await batch(dev, [changes[0], mkdir("/made")]);
    expect(committed(again[0])!.file!.revision).toBe(committed(results[0])!.file!.revision);
    expect(Code[again[1].code]).toBe("AlreadyExists");
    expect(await journalAfter(dev, namespaceId, entries.at(-1)!.cursor)).toEqual([]);

    // A batch of folder changes alone (nothing read ahead for commits).
    const folders = await batch(dev, [mkdir("/only/folders"), del("/made")]);
    expect(folders.map((r) => Code[r.code])).toEqual([Code[0], Code[0]]);
    expect(folders[1].result.case === "delete" && folders[1].result.value.entriesDeleted).toBe(2n);

    // Bad batches as a whole: empty, and over the limit.
    await expect(dev.meta.commitBatch({ changes: [] })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(dev.meta.commitBatch({ changes: Array.from({ length: 1001 }, (_, i) => create(BatchChangeSchema, { change: mkdir(`/m${i}`) })) }))
      .rejects.toThrow(/at most 1000 changes, got 1001: split it/);
  });

  it("quota counts each change: the ones that fit commit, the one over is refused alone (rolled back after it had read), later ones go on", async () => {
    const account = await createAccount(endpoints, "batch-quota");
    const dev = await deviceOf(account, "laptop");
    const first = await storeBlocks(dev, randomBytes(40_000));
    const base = await dev.meta.commitFile({ path: "/base.bin", blocks: first, size: 40_000n });
    await metaAdmin.setQuota({ username: account.username, quotaBytes: 100_000n });
    const { namespaceId, cursor: before } = await rootOf(dev);
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => storeBlocks(dev, randomBytes(25_000))));
    const results = await batch(dev, [
      commit("/in/a.bin", a),
      commit("/in/b.bin", b),
      // Over quota, and with a stale parent: it looks for a free conflicted-copy name (reads on
      // the shard) before the quota refuses it, so its savepoint is rolled back on the server.
      commit("/base.bin", c, { parentRevision: base.file!.revision + 50n }),
      mkdir("/after"),
    ]);
    expect(results.map((r) => Code[r.code])).toEqual([Code[0], Code[0], "ResourceExhausted", Code[0]]);
    expect(results[2].message).toMatch(/over quota/);
    const usage = await dev.meta.getSpaceUsage({});
    expect(usage.usedBytes).toBe(90_000n);
    const entries = await journalAfter(dev, namespaceId, before);
    expect(entries.map((e) => [Operation[e.operation], e.path])).toEqual([
      ["MKDIR", "/in"], ["PUT", "/in/a.bin"], ["PUT", "/in/b.bin"], ["MKDIR", "/after"],
    ]);
    expect(entries.map((e) => e.cursor)).toEqual(entries.map((_, i) => before + BigInt(i + 1)));
    const listed = await dev.meta.listFolder({ path: "/", recursive: true });
    expect(listed.entries.map((e) => e.path).sort()).toEqual(["/after", "/base.bin", "/in", "/in/a.bin", "/in/b.bin"]);
  });

  it("the SDK commits files uploaded at once in batches: every file lands, in fewer calls than files", async () => {
    const account = await createAccount(endpoints, "batch-sdk");
    const sdk = new SatchelClient({ metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver, credentials: { ...account, deviceName: "sdk" } });
    const dir = mkdtempSync(join(tmpdir(), "batch-sdk-"));
    const files = Array.from({ length: 24 }, (_, i) => {
      const local = join(dir, `f${i}`);
      writeFileSync(local, randomBytes(3000 + i));
      return local;
    });
    const [batchesBefore, singlesBefore] = [await served("CommitBatch"), await served("CommitFile")];
    const landed = await Promise.all(files.map((f, i) => sdk.upload(f, `/many/f${i}.bin`)));
    const calls = (await served("CommitBatch")) - batchesBefore;
    expect(landed.map((f) => f.size)).toEqual(files.map((_, i) => BigInt(3000 + i)));
    expect(calls).toBeGreaterThan(0);
    expect(calls).toBeLessThan(files.length);
    expect((await served("CommitFile")) - singlesBefore).toBe(0);
    const listed = await sdk.meta.listFolder({ path: "/many" });
    expect(listed.entries).toHaveLength(files.length);
  });
});
