import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { describe, expect, inject, it } from "vitest";
import { Operation } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { createAccount, deviceOf, failure, storeBlocks, type Device } from "@satchel/ops";

const { endpoints } = inject("cluster");

async function put(dev: Device, path: string, parentRevision = 0n) {
  const data = randomBytes(2000);
  const blocks = await storeBlocks(dev, data);
  const res = await dev.meta.commitFile({ path, blocks, size: BigInt(data.length), parentRevision, requestId: randomBytes(8).toString("hex") });
  return res.file!;
}

/** Two devices of one account: what the first saw is the root namespace's cursor when it looked. */
async function twoDevices() {
  const account = await createAccount(endpoints, "seen");
  const a = await deviceOf(endpoints, account, "laptop");
  const b = await deviceOf(endpoints, account, "desktop");
  const ns = (await a.meta.listNamespaces({})).namespaces[0].namespaceId;
  const cursorOf = async () => (await a.meta.listNamespaces({})).namespaces[0].cursor;
  const live = async (path: string) => (await a.meta.listFolder({ path, recursive: true })).entries.map((e) => e.path).sort();
  return { a, b, ns, cursorOf, live };
}

describe("a delete names what it deletes (seen_cursor)", () => {
  it("a folder delete keeps a file created and a file edited after the device's cursor, and the folder with them", async () => {
    const { a, b, ns, cursorOf, live } = await twoDevices();
    await a.meta.createFolder({ path: "/X" });
    const f1 = await put(a, "/X/f1.txt");
    await put(a, "/X/f2.txt");
    await put(a, "/X/f3.txt");
    const seen = await cursorOf();
    // Meanwhile, on the other device: an edit and a new file.
    await put(b, "/X/f1.txt", f1.revision);
    await put(b, "/X/new.txt");
    const res = await a.meta.delete({ path: "/X", seenCursor: seen });
    expect(res.entry!.isDeleted).toBe(false);
    expect(Number(res.entriesKept)).toBe(3);
    expect(Number(res.entriesDeleted)).toBe(2);
    expect(await live("/X")).toEqual(["/X/f1.txt", "/X/new.txt"]);
    // The journal says exactly what went: the two files A had seen, each its own delete.
    const delta = await a.meta.listDelta({ namespaceId: ns, cursor: seen });
    const deletes = delta.entries.filter((e) => e.operation === Operation.DELETE).map((e) => e.path).sort();
    expect(deletes).toEqual(["/X/f2.txt", "/X/f3.txt"]);
    // Each can come back from the trash on its own.
    await a.meta.undelete({ path: "/X/f2.txt" });
    expect(await live("/X")).toEqual(["/X/f1.txt", "/X/f2.txt", "/X/new.txt"]);
  });

  it("a deep new file keeps only the folders above it; with nothing new the whole folder goes as one entry", async () => {
    const { a, b, ns, cursorOf, live } = await twoDevices();
    for (const p of ["/P/q/r", "/P/s"]) await a.meta.createFolder({ path: p });
    await put(a, "/P/q/old.bin");
    await put(a, "/P/s/old.bin");
    const seen = await cursorOf();
    await put(b, "/P/q/r/new.bin");
    await a.meta.delete({ path: "/P", seenCursor: seen });
    expect(await live("/P")).toEqual(["/P/q", "/P/q/r", "/P/q/r/new.bin"]);

    await a.meta.createFolder({ path: "/Z/y" });
    await put(a, "/Z/y/z.bin");
    const now = await cursorOf();
    const res = await a.meta.delete({ path: "/Z", seenCursor: now });
    expect(res.entry!.isDeleted).toBe(true);
    const delta = await a.meta.listDelta({ namespaceId: ns, cursor: now });
    expect(delta.entries.map((e) => [e.operation, e.path])).toEqual([[Operation.DELETE, "/Z"]]);
  });

  it("a file changed after the cursor is not deleted; a cursor ahead of the namespace is refused; another user's folder is not found", async () => {
    const { a, b, cursorOf, live } = await twoDevices();
    const f = await put(a, "/doc.txt");
    const seen = await cursorOf();
    await put(b, "/doc.txt", f.revision);
    expect((await failure(a.meta.delete({ path: "/doc.txt", seenCursor: seen }))).code).toBe(Code.FailedPrecondition);
    expect(await live("/")).toContain("/doc.txt");
    const ahead = await failure(a.meta.delete({ path: "/doc.txt", seenCursor: (await cursorOf()) + 100n }));
    expect(ahead.code).toBe(Code.InvalidArgument);
    expect(ahead.rawMessage).toMatch(/ahead of the namespace/);
    const other = await twoDevices();
    await other.a.meta.createFolder({ path: "/Mine" });
    expect((await failure(a.meta.delete({ path: "/Mine", seenCursor: seen }))).code).toBe(Code.NotFound);
    expect(await other.live("/")).toContain("/Mine");
  });
});

describe("a move never erases history", () => {
  it("a file renamed onto the name of a deleted file keeps that file's versions as history of the name; other trashed entries there stay in the trash", async () => {
    const { a, live } = await twoDevices();
    await a.meta.createFolder({ path: "/T" });
    const old = await put(a, "/T/a.txt");
    await put(a, "/T/other.txt");
    await a.meta.delete({ path: "/T" });
    const b = await put(a, "/b.txt");
    await a.meta.createFolder({ path: "/S" });
    await a.meta.move({ fromPath: "/b.txt", toPath: "/S/a.txt" });
    // A folder moved onto the trashed folder: the entry that lands on a trashed one supersedes it.
    await a.meta.move({ fromPath: "/S", toPath: "/T" });
    expect(await live("/T")).toEqual(["/T/a.txt"]);
    const revisions = (await a.meta.listRevisions({ path: "/T/a.txt" })).revisions.map((r) => r.revision);
    expect(revisions).toEqual(expect.arrayContaining([old.revision, b.revision]));
    const trash = (await a.meta.listFolder({ path: "/T", includeDeleted: true })).entries.filter((e) => e.isDeleted).map((e) => e.path);
    expect(trash).toEqual(["/T/other.txt"]);
  });
});
