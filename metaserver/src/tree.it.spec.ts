import { createHash, randomBytes } from "node:crypto";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import {
  MetaAdminService, MetaService, Operation, type CommitFileResponse, type FileMetadata,
} from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { MetaserverProcesses, createAccount, failure, signIn, type TestAccount, eventually } from "@satchel/ops";

const { endpoints, stateDir } = inject("cluster");
const DEVICE = "test-device";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

const serviceTransport = (baseUrl: string) => createSatchelTransport({ baseUrl, token: endpoints.serviceToken });
const metaAdmin = createClient(MetaAdminService, serviceTransport(endpoints.metaserver));
const blockAdmin = createClient(BlockAdminService, serviceTransport(endpoints.blockserver));

interface User {
  account: TestAccount;
  meta: Client<typeof MetaService>;
  blocks: Client<typeof BlockService>;
  namespaceId: bigint;
}

/** A fresh account, signed in as one device, so that no test sees another's files. */
async function newUser(prefix: string, metaserver = endpoints.metaserver): Promise<User> {
  const account = await createAccount(endpoints, prefix);
  const token = await signIn(endpoints, account, DEVICE);
  const meta = createClient(MetaService, createSatchelTransport({ baseUrl: metaserver, token }));
  const blocks = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token }));
  const { namespaces } = await meta.listNamespaces({});
  return { account, meta, blocks, namespaceId: namespaces[0].namespaceId };
}


/** Stores the contents as blocks and commits them, in order, as the file at path. */
async function commit(u: User, path: string, contents: Buffer[] = [], parentRevision = 0n): Promise<CommitFileResponse> {
  const blocks = [];
  for (const data of contents) {
    const { grant } = await u.blocks.putBlock({ hash: sha(data), data });
    blocks.push({ hash: sha(data), size: data.length, grant });
  }
  const size = BigInt(contents.reduce((n, c) => n + c.length, 0));
  const res = await u.meta.commitFile({ path, blocks, size, parentRevision });
  expect(res.missingBlocks).toEqual([]);
  return res;
}

/** Every entry of a listing, through all its pages. */
async function listAll(u: User, req: { path: string; recursive?: boolean; includeDeleted?: boolean }): Promise<FileMetadata[]> {
  const out: FileMetadata[] = [];
  let pageToken = "";
  for (;;) {
    const page = await u.meta.listFolder({ ...req, pageToken });
    out.push(...page.entries);
    if (!page.hasMore) return out;
    expect(page.nextPageToken).not.toBe("");
    pageToken = page.nextPageToken;
  }
}

const pathsOf = (entries: FileMetadata[]) => entries.map((e) => e.path).sort();
const blockHashes = (f: FileMetadata | undefined) => (f?.blocks ?? []).map((b) => hex(b.hash));


describe("paths", () => {
  let u: User;
  beforeAll(async () => {
    u = await newUser("paths");
  });

  const badPaths: { why: string; path: string; reason: RegExp }[] = [
    { why: "a '..' segment", path: "/docs/../etc/passwd", reason: /"\.\."/ },
    { why: "a '..' at the end", path: "/docs/..", reason: /"\.\."/ },
    { why: "a '.' segment", path: "/docs/./a.txt", reason: /"\."/ },
    { why: "an empty segment", path: "/docs//a.txt", reason: /empty segment/ },
    { why: "a leading '//'", path: "//a.txt", reason: /empty segment/ },
    { why: "a NUL character", path: "/docs/a\u0000b.txt", reason: /control character/ },
    { why: "a newline", path: "/docs/a\nb.txt", reason: /control character/ },
    { why: "DEL", path: "/docs/a\u007f.txt", reason: /control character/ },
    { why: "a C1 control character", path: "/docs/a\u0085.txt", reason: /control character/ },
    { why: "a name of 256 ASCII bytes", path: `/docs/${"a".repeat(256)}`, reason: /255 bytes/ },
    { why: "a name of 128 two-byte characters (256 bytes)", path: `/docs/${"é".repeat(128)}`, reason: /255 bytes/ },
    { why: "no leading '/'", path: "docs/a.txt", reason: /must start with "\/"/ },
    { why: "a path over 3000 bytes", path: `/${Array.from({ length: 13 }, () => "a".repeat(250)).join("/")}`, reason: /3000 bytes/ },
  ];

  for (const bad of badPaths) {
    it(`a path with ${bad.why} is INVALID_ARGUMENT with the reason, on every call that takes a path`, async () => {
      const calls: [string, () => Promise<unknown>][] = [
        ["CommitFile", () => u.meta.commitFile({ path: bad.path, blocks: [], size: 0n })],
        ["CreateFolder", () => u.meta.createFolder({ path: bad.path })],
        ["GetFileMetadata", () => u.meta.getFileMetadata({ path: bad.path })],
        ["ListFolder", () => u.meta.listFolder({ path: bad.path })],
        ["Delete", () => u.meta.delete({ path: bad.path })],
        ["Undelete", () => u.meta.undelete({ path: bad.path })],
        ["PermanentlyDelete", () => u.meta.permanentlyDelete({ path: bad.path })],
        ["Move from", () => u.meta.move({ fromPath: bad.path, toPath: "/elsewhere" })],
        ["Move to", () => u.meta.move({ fromPath: "/exists.txt", toPath: bad.path })],
        ["ListRevisions", () => u.meta.listRevisions({ path: bad.path })],
        ["Restore", () => u.meta.restore({ path: bad.path, revision: 1n })],
      ];
      for (const [name, call] of calls) {
        const err = await failure(call());
        expect(err.code, name).toBe(Code.InvalidArgument);
        expect(err.rawMessage, name).toMatch(bad.reason);
      }
    });
  }

  it("refused paths created nothing", async () => {
    await commit(u, "/exists.txt");
    expect(pathsOf(await listAll(u, { path: "/", recursive: true, includeDeleted: true }))).toEqual(["/exists.txt"]);
  });

  it("the edges of the rules are accepted: a 255-byte name, a trailing '/', dots inside names", async () => {
    const longName = `/edges/${"b".repeat(251)}.txt`;
    expect((await commit(u, longName)).file?.path).toBe(longName);
    expect((await u.meta.createFolder({ path: "/edges/trailing/" })).folder?.path).toBe("/edges/trailing");
    for (const path of ["/edges/...", "/edges/.hidden", "/edges/a..b"]) expect((await commit(u, path)).file?.path).toBe(path);
  });

  it("a path written in NFD finds the file committed in NFC, and a commit in NFD stores NFC", async () => {
    const nfc = "/Caf\u00e9/R\u00e9sum\u00e9.txt";
    const nfd = nfc.normalize("NFD");
    expect(nfd).not.toBe(nfc);
    const first = await commit(u, nfc, [randomBytes(100)]);
    const found = await u.meta.getFileMetadata({ path: nfd });
    expect(found.file?.path).toBe(nfc);
    expect(found.file?.revision).toBe(first.file?.revision);

    // An edit through the NFD spelling is an edit of the same file, not a second one.
    const edit = await commit(u, nfd, [randomBytes(100)], first.file!.revision);
    expect(edit.conflict).toBe(false);
    expect(edit.file?.path).toBe(nfc);
    expect(pathsOf(await listAll(u, { path: nfd.slice(0, nfd.lastIndexOf("/")) }))).toEqual([nfc]);

    const made = await commit(u, "/Cafe\u0301/nouveau\u0301.txt");
    expect(made.file?.path).toBe("/Caf\u00e9/nouveau\u0301.txt".normalize("NFC"));
    expect((await listAll(u, { path: "/Caf\u00e9" })).map((e) => e.path).every((p) => p === p.normalize("NFC"))).toBe(true);
  });

  it("names collide case-insensitively: a new file differing only in case becomes a conflicted copy beside the first", async () => {
    const original = await commit(u, "/Docs/A.txt", [randomBytes(64)]);
    const rival = await commit(u, "/docs/a.TXT", [randomBytes(64)]);
    expect(rival.conflict).toBe(true);
    expect(rival.file?.path).toMatch(/^\/Docs\/A \(test-device's conflicted copy \d{4}-\d{2}-\d{2}\)\.txt$/);
    // Nothing was overwritten, and there is no second entry under the same key.
    const current = await u.meta.getFileMetadata({ path: "/Docs/A.txt" });
    expect(current.file?.revision).toBe(original.file?.revision);
    expect(blockHashes(current.file)).toEqual(blockHashes(original.file));
    const entries = await listAll(u, { path: "/docs" });
    expect(pathsOf(entries)).toEqual([rival.file!.path, "/Docs/A.txt"].sort());
    expect(entries.filter((e) => e.path.toLowerCase() === "/docs/a.txt")).toHaveLength(1);

    // An edit through another spelling with the right parent is an edit; the first spelling stays.
    const edit = await commit(u, "/DOCS/a.txt", [randomBytes(64)], original.file!.revision);
    expect(edit.conflict).toBe(false);
    expect(edit.file?.path).toBe("/Docs/A.txt");
    expect((await failure(u.meta.createFolder({ path: "/DOCS" }))).code).toBe(Code.AlreadyExists);
  });
});

describe("folders, the trash and moves", () => {
  let u: User;
  beforeAll(async () => {
    u = await newUser("tree");
  });

  it("CreateFolder makes the folder and its missing parents; a second time is ALREADY_EXISTS", async () => {
    const made = await u.meta.createFolder({ path: "/Projects/2026/q1" });
    expect(made.folder?.isFolder).toBe(true);
    expect(made.folder?.path).toBe("/Projects/2026/q1");
    expect(pathsOf(await listAll(u, { path: "/Projects", recursive: true }))).toEqual(["/Projects/2026", "/Projects/2026/q1"]);
    for (const path of ["/Projects/2026/q1", "/projects/2026/Q1", "/Projects"]) {
      const err = await failure(u.meta.createFolder({ path }));
      expect(err.code, path).toBe(Code.AlreadyExists);
      expect(err.rawMessage).toMatch(/already exists/);
    }
    await commit(u, "/Projects/notes.txt");
    expect((await failure(u.meta.createFolder({ path: "/Projects/notes.txt" }))).code).toBe(Code.AlreadyExists);
    expect((await u.meta.getFileMetadata({ path: "/Projects/notes.txt" })).file?.isFolder).toBe(false);
  });

  it("Delete sends a folder with its contents to the trash; Undelete brings all of it back; PermanentlyDelete removes it for good", async () => {
    const a = await commit(u, "/Trash/a.txt", [randomBytes(1000)]);
    const b = await commit(u, "/Trash/sub/b.txt", [randomBytes(2000)]);
    const used = (await u.meta.getSpaceUsage({})).usedBytes;
    const cursor = (await u.meta.listNamespaces({})).namespaces[0].cursor;

    const deleted = await u.meta.delete({ path: "/Trash" });
    expect(deleted.entry?.isDeleted).toBe(true);
    // One journal entry for the whole folder.
    const delta = await u.meta.listDelta({ namespaceId: u.namespaceId, cursor });
    expect(delta.entries.map((e) => [e.operation, e.path])).toEqual([[Operation.DELETE, "/Trash"]]);
    expect(pathsOf(await listAll(u, { path: "/" }))).not.toContain("/Trash");
    const withTrash = await listAll(u, { path: "/", includeDeleted: true });
    expect(withTrash.find((e) => e.path === "/Trash")?.isDeleted).toBe(true);
    const trashedFiles = (await listAll(u, { path: "/", recursive: true, includeDeleted: true })).filter((e) => e.path.startsWith("/Trash/"));
    expect(pathsOf(trashedFiles)).toEqual(["/Trash/a.txt", "/Trash/sub", "/Trash/sub/b.txt"]);
    expect(trashedFiles.every((e) => e.isDeleted)).toBe(true);
    for (const path of ["/Trash", "/Trash/a.txt", "/Trash/sub/b.txt"]) {
      expect((await failure(u.meta.getFileMetadata({ path }))).code, path).toBe(Code.NotFound);
    }
    expect((await failure(u.meta.listFolder({ path: "/Trash" }))).code).toBe(Code.NotFound);
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(used - 3000n);

    const back = await u.meta.undelete({ path: "/Trash" });
    expect(back.entry?.isDeleted).toBe(false);
    const restored = await listAll(u, { path: "/Trash", recursive: true });
    expect(pathsOf(restored)).toEqual(["/Trash/a.txt", "/Trash/sub", "/Trash/sub/b.txt"]);
    expect(restored.find((e) => e.path === "/Trash/a.txt")?.revision).toBe(a.file?.revision);
    expect(blockHashes(restored.find((e) => e.path === "/Trash/sub/b.txt"))).toEqual(blockHashes(b.file));
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(used);
    expect((await failure(u.meta.undelete({ path: "/Trash" }))).code).toBe(Code.NotFound);

    expect((await failure(u.meta.permanentlyDelete({ path: "/Trash" }))).code).toBe(Code.FailedPrecondition);
    await u.meta.delete({ path: "/Trash" });
    const purged = await u.meta.permanentlyDelete({ path: "/Trash" });
    expect(purged.entriesRemoved).toBe(4n);
    expect((await listAll(u, { path: "/", recursive: true, includeDeleted: true })).filter((e) => e.path.startsWith("/Trash"))).toEqual([]);
    expect((await failure(u.meta.undelete({ path: "/Trash" }))).code).toBe(Code.NotFound);
    expect((await failure(u.meta.undelete({ path: "/Trash/a.txt" }))).code).toBe(Code.NotFound);
    expect((await failure(u.meta.listRevisions({ path: "/Trash/a.txt" }))).code).toBe(Code.NotFound);
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(used - 3000n);
  });

  it("Delete with a stale parent revision is FAILED_PRECONDITION and leaves the file", async () => {
    const v1 = await commit(u, "/Stale/f.txt", [randomBytes(10)]);
    const v2 = await commit(u, "/Stale/f.txt", [randomBytes(10)], v1.file!.revision);
    expect((await failure(u.meta.delete({ path: "/Stale/f.txt", parentRevision: v1.file!.revision }))).code).toBe(Code.FailedPrecondition);
    expect((await u.meta.getFileMetadata({ path: "/Stale/f.txt" })).file?.revision).toBe(v2.file?.revision);
    await u.meta.delete({ path: "/Stale/f.txt", parentRevision: v2.file!.revision });
    expect((await failure(u.meta.getFileMetadata({ path: "/Stale/f.txt" }))).code).toBe(Code.NotFound);
  });

  it("nothing can be created inside a file (FAILED_PRECONDITION)", async () => {
    await commit(u, "/Leaf/file.txt");
    expect((await failure(u.meta.commitFile({ path: "/Leaf/file.txt/child.txt", blocks: [], size: 0n }))).code).toBe(Code.FailedPrecondition);
    expect((await failure(u.meta.createFolder({ path: "/Leaf/FILE.txt/sub" }))).code).toBe(Code.FailedPrecondition);
    expect(pathsOf(await listAll(u, { path: "/Leaf", recursive: true, includeDeleted: true }))).toEqual(["/Leaf/file.txt"]);
  });

  it("Undelete brings back exactly what one Delete removed, not what was deleted before it", async () => {
    await commit(u, "/Twice/keep.txt");
    await commit(u, "/Twice/gone.txt");
    await u.meta.delete({ path: "/Twice/gone.txt" });
    await u.meta.delete({ path: "/Twice" });
    await u.meta.undelete({ path: "/Twice" });
    expect(pathsOf(await listAll(u, { path: "/Twice" }))).toEqual(["/Twice/keep.txt"]);
    await u.meta.undelete({ path: "/Twice/gone.txt" });
    expect(pathsOf(await listAll(u, { path: "/Twice" }))).toEqual(["/Twice/gone.txt", "/Twice/keep.txt"]);
  });

  it("renaming a file keeps its content and versions; the old path is NOT_FOUND", async () => {
    const v1 = await commit(u, "/Ren/a.txt", [randomBytes(10)]);
    const v2 = await commit(u, "/Ren/a.txt", [randomBytes(10)], v1.file!.revision);
    const moved = await u.meta.move({ fromPath: "/Ren/a.txt", toPath: "/Ren/b.txt" });
    expect(moved.entry?.path).toBe("/Ren/b.txt");
    expect(moved.descendantsMoved).toBe(0n);
    expect((await failure(u.meta.getFileMetadata({ path: "/Ren/a.txt" }))).code).toBe(Code.NotFound);
    const now = (await u.meta.getFileMetadata({ path: "/Ren/b.txt" })).file;
    expect(now?.revision).toBe(v2.file?.revision);
    expect(blockHashes(now)).toEqual(blockHashes(v2.file));
    expect((await u.meta.listRevisions({ path: "/Ren/b.txt" })).revisions.map((r) => r.revision)).toEqual([v2.file!.revision, v1.file!.revision]);
    expect((await failure(u.meta.listRevisions({ path: "/Ren/a.txt" }))).code).toBe(Code.NotFound);
  });

  it("a move into folders that do not exist yet makes them, journaled before the move", async () => {
    const f = await commit(u, "/NewParent/a.txt", [randomBytes(10)]);
    await commit(u, "/NewParent/dir/inside.txt");
    const cursor = (await u.meta.listNamespaces({})).namespaces[0].cursor;

    const file = await u.meta.move({ fromPath: "/NewParent/a.txt", toPath: "/NewParent/made/deeper/a.txt" });
    expect(file.entry?.path).toBe("/NewParent/made/deeper/a.txt");
    expect((await u.meta.getFileMetadata({ path: "/NewParent/made/deeper" })).file?.isFolder).toBe(true);
    expect(pathsOf(await listAll(u, { path: "/NewParent/made/deeper" }))).toEqual(["/NewParent/made/deeper/a.txt"]);
    expect((await u.meta.getFileMetadata({ path: "/NewParent/made/deeper/a.txt" })).file?.revision).toBe(f.file?.revision);

    await u.meta.move({ fromPath: "/NewParent/dir", toPath: "/NewParent/other/dir" });
    expect(pathsOf(await listAll(u, { path: "/NewParent/other", recursive: true }))).toEqual(["/NewParent/other/dir", "/NewParent/other/dir/inside.txt"]);

    // The journal replays in order: the parents first, then each move, at increasing cursors.
    const delta = await u.meta.listDelta({ namespaceId: u.namespaceId, cursor });
    expect(delta.entries.map((e) => [e.operation, e.path, e.fromPath])).toEqual([
      [Operation.MKDIR, "/NewParent/made", ""],
      [Operation.MKDIR, "/NewParent/made/deeper", ""],
      [Operation.MOVE, "/NewParent/made/deeper/a.txt", "/NewParent/a.txt"],
      [Operation.MKDIR, "/NewParent/other", ""],
      [Operation.MOVE, "/NewParent/other/dir", "/NewParent/dir"],
    ]);
    const cursors = delta.entries.map((e) => e.cursor);
    expect(cursors.every((c, i) => i === 0 || c > cursors[i - 1])).toBe(true);
    // The moved entry carries the cursor of its move, not one from before its new parents existed.
    const moved = (await u.meta.getFileMetadata({ path: "/NewParent/made/deeper/a.txt" })).file;
    expect(moved?.cursor).toBe(delta.entries[2].cursor);
  });

  it("moving a folder moves its whole subtree: listings, metadata and versions follow; nothing stays at the old path", async () => {
    const x = await commit(u, "/Mv/src/x.txt", [randomBytes(10)]);
    await commit(u, "/Mv/src/sub/y.txt", [randomBytes(10)]);
    await commit(u, "/Mv/src/sub/deep/z.txt", [randomBytes(10)]);
    await commit(u, "/Mv/src/Ünïcødé/ф.txt");
    await commit(u, "/Mv/src/trashed.txt");
    await u.meta.delete({ path: "/Mv/src/trashed.txt" });
    await u.meta.createFolder({ path: "/Mv/elsewhere" });
    const moved = await u.meta.move({ fromPath: "/Mv/src", toPath: "/Mv/elsewhere/dst" });
    expect(moved.entry?.path).toBe("/Mv/elsewhere/dst");
    expect(moved.descendantsMoved).toBe(8n);

    expect(pathsOf(await listAll(u, { path: "/Mv/elsewhere/dst", recursive: true }))).toEqual([
      "/Mv/elsewhere/dst/sub", "/Mv/elsewhere/dst/sub/deep", "/Mv/elsewhere/dst/sub/deep/z.txt", "/Mv/elsewhere/dst/sub/y.txt", "/Mv/elsewhere/dst/x.txt",
      "/Mv/elsewhere/dst/Ünïcødé", "/Mv/elsewhere/dst/Ünïcødé/ф.txt",
    ].sort());
    // Non-recursive listings find children by their parent: every level must have followed.
    expect(pathsOf(await listAll(u, { path: "/Mv/elsewhere/dst" }))).toEqual(["/Mv/elsewhere/dst/sub", "/Mv/elsewhere/dst/x.txt", "/Mv/elsewhere/dst/Ünïcødé"].sort());
    expect(pathsOf(await listAll(u, { path: "/mv/ELSEWHERE/dst/üNÏCØDÉ" }))).toEqual(["/Mv/elsewhere/dst/Ünïcødé/ф.txt"]);
    expect(pathsOf(await listAll(u, { path: "/Mv/elsewhere/dst/sub" }))).toEqual(["/Mv/elsewhere/dst/sub/deep", "/Mv/elsewhere/dst/sub/y.txt"]);
    expect(pathsOf(await listAll(u, { path: "/Mv/elsewhere/dst/sub/deep" }))).toEqual(["/Mv/elsewhere/dst/sub/deep/z.txt"]);
    expect((await u.meta.getFileMetadata({ path: "/Mv/elsewhere/dst/x.txt" })).file?.revision).toBe(x.file?.revision);
    expect((await u.meta.listRevisions({ path: "/Mv/elsewhere/dst/x.txt" })).revisions.map((r) => r.revision)).toEqual([x.file!.revision]);
    // The trash moved with it and is restorable at the new place.
    await u.meta.undelete({ path: "/Mv/elsewhere/dst/trashed.txt" });
    expect((await u.meta.getFileMetadata({ path: "/Mv/elsewhere/dst/trashed.txt" })).file?.isFolder).toBe(false);

    expect(pathsOf(await listAll(u, { path: "/Mv" }))).toEqual(["/Mv/elsewhere"]);
    for (const path of ["/Mv/src", "/Mv/src/x.txt", "/Mv/src/sub/deep/z.txt"]) {
      expect((await failure(u.meta.getFileMetadata({ path }))).code, path).toBe(Code.NotFound);
    }
    expect((await failure(u.meta.listFolder({ path: "/Mv/src" }))).code).toBe(Code.NotFound);
    expect((await listAll(u, { path: "/", recursive: true, includeDeleted: true })).filter((e) => e.path.startsWith("/Mv/src"))).toEqual([]);
    // A new folder at the old path starts empty.
    await u.meta.createFolder({ path: "/Mv/src" });
    expect(await listAll(u, { path: "/Mv/src", recursive: true, includeDeleted: true })).toEqual([]);
  });

  it("a folder cannot move into itself (INVALID_ARGUMENT), and nothing moves", async () => {
    await commit(u, "/Self/inner/f.txt");
    for (const toPath of ["/Self/inner/Self", "/self/INNER/x", "/SELF/a"]) {
      const err = await failure(u.meta.move({ fromPath: "/Self", toPath }));
      expect(err.code, toPath).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/into itself/);
    }
    expect(pathsOf(await listAll(u, { path: "/Self", recursive: true }))).toEqual(["/Self/inner", "/Self/inner/f.txt"]);
  });

  it("a move onto an existing entry is ALREADY_EXISTS and changes neither", async () => {
    const a = await commit(u, "/Onto/a.txt", [randomBytes(10)]);
    const b = await commit(u, "/Onto/b.txt", [randomBytes(10)]);
    await u.meta.createFolder({ path: "/Onto/dir" });
    for (const [fromPath, toPath] of [["/Onto/a.txt", "/Onto/b.txt"], ["/Onto/a.txt", "/onto/B.TXT"], ["/Onto/dir", "/Onto/a.txt"], ["/Onto/a.txt", "/Onto/dir"]]) {
      const err = await failure(u.meta.move({ fromPath, toPath }));
      expect(err.code, `${fromPath} -> ${toPath}`).toBe(Code.AlreadyExists);
    }
    expect(blockHashes((await u.meta.getFileMetadata({ path: "/Onto/a.txt" })).file)).toEqual(blockHashes(a.file));
    expect(blockHashes((await u.meta.getFileMetadata({ path: "/Onto/b.txt" })).file)).toEqual(blockHashes(b.file));
    expect(pathsOf(await listAll(u, { path: "/Onto" }))).toEqual(["/Onto/a.txt", "/Onto/b.txt", "/Onto/dir"]);
    expect((await failure(u.meta.move({ fromPath: "/Onto/missing.txt", toPath: "/Onto/c.txt" }))).code).toBe(Code.NotFound);
  });

  it("a case-only rename changes how a file or folder (and everything in it) is spelled", async () => {
    const f = await commit(u, "/Case/readme.txt", [randomBytes(10)]);
    await u.meta.move({ fromPath: "/Case/readme.txt", toPath: "/Case/README.txt" });
    expect((await u.meta.getFileMetadata({ path: "/case/readme.txt" })).file?.path).toBe("/Case/README.txt");
    expect((await u.meta.getFileMetadata({ path: "/Case/README.txt" })).file?.revision).toBe(f.file?.revision);
    expect(pathsOf(await listAll(u, { path: "/Case" }))).toEqual(["/Case/README.txt"]);

    await commit(u, "/Case/photos/2026/p.jpg");
    await u.meta.move({ fromPath: "/Case/photos", toPath: "/Case/Photos" });
    expect(pathsOf(await listAll(u, { path: "/Case", recursive: true }))).toEqual([
      "/Case/Photos", "/Case/Photos/2026", "/Case/Photos/2026/p.jpg", "/Case/README.txt",
    ]);
    expect(pathsOf(await listAll(u, { path: "/case/photos/2026" }))).toEqual(["/Case/Photos/2026/p.jpg"]);
  });
});

describe("a folder move is one transaction", () => {
  it("10,000 files move together: the new path lists exactly 10,000, the old path nothing, and the journal shows one move", async () => {
    const u = await newUser("bigmove");
    const N = 10_000;
    await u.meta.createFolder({ path: "/Big/src" });
    let next = 0;
    let lastCursor = 0n;
    let retried = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < N) {
        const path = `/Big/src/f${String(next++).padStart(5, "0")}.txt`;
        for (let attempt = 0; ; attempt++) {
          try {
            const res = await u.meta.commitFile({ path, blocks: [], size: 0n });
            if (res.file!.cursor > lastCursor) lastCursor = res.file!.cursor;
            break;
          } catch (err) {
            // Contention is the server's to report and the client's to retry; the move is what is tested.
            if (attempt > 5 || ConnectError.from(err).code !== Code.Aborted) throw err;
            retried++;
          }
        }
      }
    }));
    console.log(`committed ${N} empty files in ${Math.round(performance.now() - started)} ms (${retried} retried)`);

    const moved = await u.meta.move({ fromPath: "/Big/src", toPath: "/Big/dst" });
    expect(moved.descendantsMoved).toBe(BigInt(N));

    const listed = await listAll(u, { path: "/Big/dst", recursive: true });
    expect(listed).toHaveLength(N);
    expect(new Set(listed.map((e) => e.path)).size).toBe(N);
    expect(listed.every((e) => !e.isFolder && /^\/Big\/dst\/f\d{5}\.txt$/.test(e.path))).toBe(true);
    expect((await failure(u.meta.listFolder({ path: "/Big/src", recursive: true }))).code).toBe(Code.NotFound);
    expect(pathsOf(await listAll(u, { path: "/Big", includeDeleted: true }))).toEqual(["/Big/dst"]);
    const page = await u.meta.listFolder({ path: "/Big/dst", pageSize: 5 });
    expect(page.entries.map((e) => e.path)).toEqual([0, 1, 2, 3, 4].map((i) => `/Big/dst/f0000${i}.txt`));

    const delta = await u.meta.listDelta({ namespaceId: u.namespaceId, cursor: lastCursor });
    expect(delta.hasMore).toBe(false);
    expect(delta.entries).toHaveLength(1);
    expect(delta.entries[0].operation).toBe(Operation.MOVE);
    expect(delta.entries[0].path).toBe("/Big/dst");
    expect(delta.entries[0].fromPath).toBe("/Big/src");
    // The 10,000 commits take most of it: ~130 s when CI runs three suites at once, more on a slower day.
  }, 420_000);
});

describe("versions", () => {
  it("ListRevisions lists versions newest first; Restore makes an old one current as a new revision", async () => {
    const u = await newUser("versions");
    const contents = [randomBytes(500), randomBytes(600), randomBytes(700)];
    const v1 = await commit(u, "/v/file.bin", [contents[0]]);
    const v2 = await commit(u, "/v/file.bin", [contents[1]], v1.file!.revision);
    const v3 = await commit(u, "/v/file.bin", [contents[2]], v2.file!.revision);
    const revs = [v1, v2, v3].map((v) => v.file!.revision);
    expect(revs[0] < revs[1] && revs[1] < revs[2]).toBe(true);

    const listed = (await u.meta.listRevisions({ path: "/v/file.bin" })).revisions;
    expect(listed.map((r) => r.revision)).toEqual([revs[2], revs[1], revs[0]]);
    expect(listed.map((r) => r.size)).toEqual([700n, 600n, 500n]);
    expect(listed.map(blockHashes)).toEqual([v3, v2, v1].map((v) => blockHashes(v.file)));
    expect((await u.meta.listRevisions({ path: "/V/FILE.BIN", limit: 2 })).revisions.map((r) => r.revision)).toEqual([revs[2], revs[1]]);

    const restored = await u.meta.restore({ path: "/v/file.bin", revision: revs[0] });
    expect(restored.file!.revision > revs[2]).toBe(true);
    expect(blockHashes(restored.file)).toEqual(blockHashes(v1.file));
    expect(restored.file?.size).toBe(500n);
    const current = (await u.meta.getFileMetadata({ path: "/v/file.bin" })).file;
    expect(current?.revision).toBe(restored.file?.revision);
    expect(blockHashes(current)).toEqual(blockHashes(v1.file));
    expect((await u.meta.listRevisions({ path: "/v/file.bin" })).revisions.map((r) => r.revision)).toEqual([restored.file!.revision, ...revs.toReversed()]);
  });

  it("Restore brings a deleted file back with the content of the chosen version", async () => {
    const u = await newUser("restore-deleted");
    const v1 = await commit(u, "/d/file.bin", [randomBytes(300)]);
    await commit(u, "/d/file.bin", [randomBytes(400)], v1.file!.revision);
    await u.meta.delete({ path: "/d/file.bin" });
    const restored = await u.meta.restore({ path: "/d/file.bin", revision: v1.file!.revision });
    const current = (await u.meta.getFileMetadata({ path: "/d/file.bin" })).file;
    expect(current?.isDeleted).toBe(false);
    expect(current?.revision).toBe(restored.file?.revision);
    expect(blockHashes(current)).toEqual(blockHashes(v1.file));
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(300n);
  });

  it("Restore of a revision that is not this file's is NOT_FOUND and changes nothing", async () => {
    const u = await newUser("restore");
    const mine = await commit(u, "/r/mine.txt", [randomBytes(50)]);
    const other = await commit(u, "/r/other.txt", [randomBytes(50)]);
    const folder = await u.meta.createFolder({ path: "/r/folder" });
    const stranger = await newUser("restore-stranger");
    const theirs = await commit(stranger, "/r/mine.txt", [randomBytes(50)]);

    for (const revision of [other.file!.revision, folder.folder!.revision, theirs.file!.revision + 1000n, 0n]) {
      const err = await failure(u.meta.restore({ path: "/r/mine.txt", revision }));
      expect(err.code, `revision ${revision}`).toBe(Code.NotFound);
    }
    const current = (await u.meta.getFileMetadata({ path: "/r/mine.txt" })).file;
    expect(current?.revision).toBe(mine.file?.revision);
    expect((await u.meta.listRevisions({ path: "/r/mine.txt" })).revisions).toHaveLength(1);
    expect(blockHashes((await u.meta.getFileMetadata({ path: "/r/other.txt" })).file)).toEqual(blockHashes(other.file));
  });
});

describe("quotas", () => {
  it("a commit over quota is RESOURCE_EXHAUSTED and changes nothing; deleting frees space; within quota succeeds", async () => {
    const u = await newUser("quota");
    await metaAdmin.setQuota({ username: u.account.username, quotaBytes: 1000n });
    expect(await u.meta.getSpaceUsage({})).toMatchObject({ usedBytes: 0n, quotaBytes: 1000n });

    const a = await commit(u, "/q/a.bin", [randomBytes(600)]);
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(600n);

    const cursorBefore = (await u.meta.listNamespaces({})).namespaces[0].cursor;
    const overNew = await failure(commit(u, "/q/new-folder/b.bin", [randomBytes(500)]));
    expect(overNew.code).toBe(Code.ResourceExhausted);
    expect(overNew.rawMessage).toMatch(/quota/);
    expect((await failure(u.meta.getFileMetadata({ path: "/q/new-folder/b.bin" }))).code).toBe(Code.NotFound);
    expect((await failure(u.meta.getFileMetadata({ path: "/q/new-folder" }))).code).toBe(Code.NotFound);

    const overEdit = await failure(commit(u, "/q/a.bin", [randomBytes(1001)], a.file!.revision));
    expect(overEdit.code).toBe(Code.ResourceExhausted);
    expect((await u.meta.getFileMetadata({ path: "/q/a.bin" })).file?.revision).toBe(a.file?.revision);
    expect((await u.meta.listRevisions({ path: "/q/a.bin" })).revisions).toHaveLength(1);
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(600n);
    expect((await u.meta.listDelta({ namespaceId: u.namespaceId, cursor: cursorBefore })).entries).toEqual([]);

    // Replacing a file counts only the difference: 600 -> 1000 bytes fits a 1000-byte quota exactly.
    const grown = await commit(u, "/q/a.bin", [randomBytes(1000)], a.file!.revision);
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(1000n);
    expect((await failure(commit(u, "/q/one-more.bin", [randomBytes(1)]))).code).toBe(Code.ResourceExhausted);

    await u.meta.delete({ path: "/q/a.bin" });
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(0n);
    const b = await commit(u, "/q/b.bin", [randomBytes(500)]);
    expect(b.file?.size).toBe(500n);
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(500n);

    // Bringing the deleted file back would need 1000 more bytes: refused, and it stays in the trash.
    expect((await failure(u.meta.undelete({ path: "/q/a.bin" }))).code).toBe(Code.ResourceExhausted);
    expect((await failure(u.meta.getFileMetadata({ path: "/q/a.bin" }))).code).toBe(Code.NotFound);
    expect((await u.meta.getSpaceUsage({})).usedBytes).toBe(500n);

    // Raising the quota lets the same commit through.
    await metaAdmin.setQuota({ username: u.account.username, quotaBytes: 0n });
    await u.meta.undelete({ path: "/q/a.bin" });
    expect((await u.meta.getFileMetadata({ path: "/q/a.bin" })).file?.revision).toBe(grown.file?.revision);
    expect(await u.meta.getSpaceUsage({})).toMatchObject({ usedBytes: 1500n, quotaBytes: 0n });
  });

  it("SetQuota for an unknown user is NOT_FOUND", async () => {
    const err = await failure(metaAdmin.setQuota({ username: `nobody-${randomBytes(5).toString("hex")}`, quotaBytes: 1n }));
    expect(err.code).toBe(Code.NotFound);
  });
});

// Last in this file: the pruning metaserver applies its policy to every namespace of the cluster.
describe("retention by count", () => {
  const extra = new MetaserverProcesses(endpoints, stateDir);
  let prunerUrl = "";

  beforeAll(async () => {
    // A second metaserver of this cluster that keeps 2 versions per file and prunes only when asked.
    prunerUrl = (await extra.start("pruning-metaserver", 60, { SATCHEL_VERSIONS_KEPT: "2", SATCHEL_PRUNE_INTERVAL_SECONDS: "0" })).url;
  });

  afterAll(() => extra.stopAll());

  it("Prune keeps the newest 2 versions of a 4-version file and releases the pruned versions' block references", async () => {
    const u = await newUser("retention");
    const contents = Array.from({ length: 4 }, () => randomBytes(4096));
    const hashes = contents.map(sha);
    let parent = 0n;
    const revs: bigint[] = [];
    for (const c of contents) {
      const res = await commit(u, "/keep/two.bin", [c], parent);
      parent = res.file!.revision;
      revs.push(parent);
    }
    const counts = async () => (await blockAdmin.getReferenceCounts({ hashes })).counts.map((c) => c.refCount);
    await eventually("each version's block to be referenced once", async () => (await counts()).every((n) => n === 1n));

    const prunerAdmin = createClient(MetaAdminService, serviceTransport(prunerUrl));
    const report = await prunerAdmin.prune({});
    expect(report.versionsPruned).toBeGreaterThanOrEqual(2n);

    expect((await u.meta.listRevisions({ path: "/keep/two.bin" })).revisions.map((r) => r.revision)).toEqual([revs[3], revs[2]]);
    expect((await u.meta.getFileMetadata({ path: "/keep/two.bin" })).file?.revision).toBe(revs[3]);
    expect((await failure(u.meta.restore({ path: "/keep/two.bin", revision: revs[0] }))).code).toBe(Code.NotFound);
    await eventually("the pruned versions' references to be released", async () => (await counts()).join() === [0n, 0n, 1n, 1n].join());

    // A second pass finds nothing more to prune for this file.
    await prunerAdmin.prune({});
    expect((await u.meta.listRevisions({ path: "/keep/two.bin" })).revisions).toHaveLength(2);
    expect(await counts()).toEqual([0n, 0n, 1n, 1n]);
  });
});
