import { createHash, randomBytes } from "node:crypto";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { MetaService, Operation, Role, type BlockRef } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { createAccount, httpGet, MetaserverProcesses, signIn, type TestAccount } from "@satchel/ops";

const { endpoints, stateDir } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Device {
  account: TestAccount;
  meta: Client<typeof MetaService>;
  blocks: Client<typeof BlockService>;
}

async function deviceOf(account: TestAccount, name = "laptop"): Promise<Device> {
  const token = await signIn(endpoints, account, name);
  return {
    account,
    meta: createClient(MetaService, createSatchelTransport({ baseUrl: endpoints.metaserver, token })),
    blocks: createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token })),
  };
}

/** Uploads content as blocks of at most blockSize bytes and commits it as a new file. */
async function upload(dev: Device, path: string, data: Buffer, blockSize = 64 * 1024) {
  const blocks: { hash: Uint8Array; size: number; grant: Uint8Array }[] = [];
  for (let at = 0; at < data.length; at += blockSize) {
    const block = data.subarray(at, at + blockSize);
    const { grant } = await dev.blocks.putBlock({ hash: sha(block), data: block });
    blocks.push({ hash: sha(block), size: block.length, grant });
  }
  const res = await dev.meta.commitFile({ path, blocks, size: BigInt(data.length), parentRevision: 0n });
  expect(res.missingBlocks).toEqual([]);
  expect(res.conflict).toBe(false);
  return res.file!;
}

async function readBack(dev: Device, blocks: BlockRef[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const b of blocks) parts.push(Buffer.from((await dev.blocks.getBlock({ hash: b.hash, grant: b.grant })).data));
  return Buffer.concat(parts);
}

/** The gRPC code a call ends with, by name ("OK" when it succeeds). */
async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}

async function journalOf(dev: Device, namespaceId: bigint) {
  const res = await dev.meta.listDelta({ namespaceId, cursor: 0n });
  expect(res.hasMore).toBe(false);
  return res.entries;
}

/** A share-link GET, as a browser would make it (over HTTPS, trusting the cluster's CA). */
const fetchBytes = (url: string) => httpGet(url);

describe("shared folders", () => {
  it("members see and read a shared folder by role; editors write, viewers cannot; only the owner manages members", async () => {
    const [ownerAccount, editorAccount, viewerAccount, bystanderAccount] = await Promise.all(
      ["owner", "editor", "viewer", "bystander"].map((p) => createAccount(endpoints, p)),
    );
    const owner = await deviceOf(ownerAccount);
    const editor = await deviceOf(editorAccount);
    const viewer = await deviceOf(viewerAccount);
    const readme = randomBytes(90_000);
    const spec = randomBytes(2_000);
    await upload(owner, "/Project/readme.txt", readme);
    await upload(owner, "/Project/docs/spec.txt", spec);
    await upload(owner, "/private.txt", randomBytes(10));

    const toEditor = await owner.meta.shareFolder({ path: "/Project", username: editorAccount.username, role: Role.EDITOR });
    expect(toEditor.member).toMatchObject({ username: editorAccount.username, role: Role.EDITOR });
    const toViewer = await owner.meta.shareFolder({ path: "/Project", username: viewerAccount.username, role: Role.VIEWER });
    const shared = toEditor.namespaceId;
    expect(toViewer.namespaceId).toBe(shared);

    // The owner keeps the folder where it was, now a namespace of its own; the root journal says so.
    const ownerMounts = (await owner.meta.listNamespaces({})).namespaces;
    expect(ownerMounts.find((n) => n.namespaceId === shared)).toMatchObject({ path: "/Project", role: Role.OWNER });
    const ownerRoot = ownerMounts.find((n) => n.path === "/")!;
    const mount = (await journalOf(owner, ownerRoot.namespaceId)).filter((e) => e.operation === Operation.MOUNT);
    expect(mount.map((e) => [e.path, e.file?.namespaceId, e.file?.isFolder])).toEqual([["/Project", shared, true]]);

    for (const [member, role] of [[editor, Role.EDITOR], [viewer, Role.VIEWER]] as const) {
      const mounts = (await member.meta.listNamespaces({})).namespaces;
      const theirs = mounts.find((n) => n.namespaceId === shared);
      expect(theirs).toMatchObject({ path: "/Project", role });
      expect(theirs!.cursor).toBeGreaterThan(0n);
      const top = (await member.meta.listFolder({ path: "/" })).entries;
      expect(top.map((e) => [e.path, e.isFolder, e.namespaceId])).toEqual([["/Project", true, shared]]);
      const inside = (await member.meta.listFolder({ path: "/Project", recursive: true })).entries.map((e) => e.path).sort();
      expect(inside).toEqual(["/Project/docs", "/Project/docs/spec.txt", "/Project/readme.txt"]);
      const file = (await member.meta.getFileMetadata({ path: "/Project/readme.txt" })).file!;
      expect(file).toMatchObject({ path: "/Project/readme.txt", namespaceId: shared, size: BigInt(readme.length) });
      expect(hex(sha(await readBack(member, file.blocks)))).toBe(hex(sha(readme)));
      // The shared namespace's journal, in the member's tree, from cursor 0.
      const journal = await journalOf(member, shared);
      expect(journal.map((e) => [Operation[e.operation], e.path]).sort()).toEqual([
        ["MKDIR", "/Project/docs"], ["PUT", "/Project/docs/spec.txt"], ["PUT", "/Project/readme.txt"],
      ]);
      expect(journal.find((e) => e.path === "/Project/docs/spec.txt")!.file).toMatchObject({ size: BigInt(spec.length), namespaceId: shared });
      expect(journal.at(-1)!.cursor).toBe(theirs!.cursor);
      // Nothing outside the shared folder shows.
      expect(await codeOf(member.meta.getFileMetadata({ path: "/private.txt" }))).toBe("NotFound");
    }

    // The editor's commit lands in the owner's folder.
    const fromEditor = randomBytes(30_000);
    const before = (await owner.meta.listNamespaces({})).namespaces.find((n) => n.namespaceId === shared)!.cursor;
    await upload(editor, "/Project/from-editor.bin", fromEditor);
    const seen = (await owner.meta.getFileMetadata({ path: "/Project/from-editor.bin" })).file!;
    expect(hex(sha(await readBack(owner, seen.blocks)))).toBe(hex(sha(fromEditor)));
    const delta = await owner.meta.listDelta({ namespaceId: shared, cursor: before });
    expect(delta.entries.map((e) => [Operation[e.operation], e.path])).toEqual([["PUT", "/Project/from-editor.bin"]]);

    // The viewer can change nothing.
    const viewerWrites = {
      commit: viewer.meta.commitFile({ path: "/Project/from-viewer.txt", blocks: [], size: 0n, parentRevision: 0n }),
      overwrite: viewer.meta.commitFile({ path: "/Project/readme.txt", blocks: [], size: 0n, parentRevision: seen.revision }),
      mkdir: viewer.meta.createFolder({ path: "/Project/new" }),
      delete: viewer.meta.delete({ path: "/Project/readme.txt" }),
      move: viewer.meta.move({ fromPath: "/Project/readme.txt", toPath: "/Project/renamed.txt" }),
      share: viewer.meta.shareFolder({ path: "/Project", username: bystanderAccount.username, role: Role.VIEWER }),
    };
    const codes = Object.fromEntries(await Promise.all(Object.entries(viewerWrites).map(async ([k, call]) => [k, await codeOf(call)])));
    expect(codes).toEqual({
      commit: "PermissionDenied", overwrite: "PermissionDenied", mkdir: "PermissionDenied",
      delete: "PermissionDenied", move: "PermissionDenied", share: "PermissionDenied",
    });
    const after = (await owner.meta.listFolder({ path: "/Project", recursive: true })).entries.map((e) => e.path).sort();
    expect(after).toEqual(["/Project/docs", "/Project/docs/spec.txt", "/Project/from-editor.bin", "/Project/readme.txt"]);

    const members = (await owner.meta.listMembers({ path: "/Project" }));
    expect(members.namespaceId).toBe(shared);
    expect(members.members.map((m) => [m.username, m.role]).sort()).toEqual([
      [editorAccount.username, Role.EDITOR], [ownerAccount.username, Role.OWNER], [viewerAccount.username, Role.VIEWER],
    ].sort());

    // Members do not manage members, editors included.
    expect(await codeOf(editor.meta.shareFolder({ path: "/Project", username: bystanderAccount.username, role: Role.VIEWER }))).toBe("PermissionDenied");
    expect(await codeOf(editor.meta.unshare({ path: "/Project", username: viewerAccount.username }))).toBe("PermissionDenied");
    expect(await codeOf(viewer.meta.unshare({ path: "/Project", username: editorAccount.username }))).toBe("PermissionDenied");
    expect((await owner.meta.listMembers({ path: "/Project" })).members).toHaveLength(3);

    // Bad requests say what is wrong.
    expect(await codeOf(owner.meta.shareFolder({ path: "/Project", username: `nobody-${randomBytes(6).toString("hex")}`, role: Role.EDITOR }))).toBe("NotFound");
    expect(await codeOf(owner.meta.shareFolder({ path: "/Project", username: ownerAccount.username, role: Role.EDITOR }))).toBe("InvalidArgument");
    for (const role of [Role.UNSPECIFIED, Role.OWNER]) {
      expect(await codeOf(owner.meta.shareFolder({ path: "/Project", username: bystanderAccount.username, role }))).toBe("InvalidArgument");
    }

    // Unsharing takes the folder out of the viewer's tree at once.
    await owner.meta.unshare({ path: "/Project", username: viewerAccount.username });
    expect((await viewer.meta.listNamespaces({})).namespaces.map((n) => n.namespaceId)).not.toContain(shared);
    expect((await viewer.meta.listFolder({ path: "/" })).entries.map((e) => e.path)).not.toContain("/Project");
    expect(await codeOf(viewer.meta.listDelta({ namespaceId: shared, cursor: 0n }))).toBe("PermissionDenied");
    expect(await codeOf(viewer.meta.waitForChange({ cursors: [{ namespaceId: shared, cursor: 0n }], timeoutSeconds: 1 }))).toBe("PermissionDenied");
    expect(await codeOf(viewer.meta.getFileMetadata({ path: "/Project/readme.txt" }))).toBe("NotFound");
    expect((await owner.meta.listMembers({ path: "/Project" })).members.map((m) => m.username).sort()).toEqual(
      [editorAccount.username, ownerAccount.username].sort(),
    );
    // The editor keeps access.
    expect((await editor.meta.getFileMetadata({ path: "/Project/readme.txt" })).file!.namespaceId).toBe(shared);
  });
});

describe("leaving a shared folder", () => {
  it("a member who leaves loses only their own mount, on every device (their root journal says so); the owner and the others keep the folder and its files", async () => {
    const [ownerAccount, memberAccount, otherAccount] = await Promise.all([createAccount(endpoints, "lv-owner"), createAccount(endpoints, "lv-member"), createAccount(endpoints, "lv-other")]);
    const owner = await deviceOf(ownerAccount);
    const member = await deviceOf(memberAccount);
    const other = await deviceOf(otherAccount);
    const data = randomBytes(5_000);
    await upload(owner, "/Team/plan.bin", data);
    const shared = (await owner.meta.shareFolder({ path: "/Team", username: memberAccount.username, role: Role.EDITOR })).namespaceId;
    await owner.meta.shareFolder({ path: "/Team", username: otherAccount.username, role: Role.VIEWER });
    const memberRoot = (await member.meta.listNamespaces({})).namespaces.find((n) => n.path === "/")!;

    expect((await member.meta.leaveSharedFolder({ path: "/Team" })).namespaceId).toBe(shared);
    expect((await member.meta.listNamespaces({})).namespaces.map((n) => n.path)).toEqual(["/"]);
    expect(await codeOf(member.meta.listDelta({ namespaceId: shared, cursor: 0n }))).toBe("PermissionDenied");
    const news = (await member.meta.listDelta({ namespaceId: memberRoot.namespaceId, cursor: memberRoot.cursor })).entries;
    expect(news.map((e) => [e.operation, e.path])).toEqual([[Operation.DELETE, "/Team"]]);

    // Nothing of the folder changed for anyone else.
    expect((await owner.meta.listMembers({ path: "/Team" })).members.map((m) => m.username).sort()).toEqual([ownerAccount.username, otherAccount.username].sort());
    for (const dev of [owner, other]) {
      const file = (await dev.meta.getFileMetadata({ path: "/Team/plan.bin" })).file!;
      expect(hex(sha(await readBack(dev, file.blocks)))).toBe(hex(sha(data)));
    }
    // Leaving twice, the owner leaving, and leaving what is not a shared folder say why.
    expect(await codeOf(member.meta.leaveSharedFolder({ path: "/Team" }))).toBe("NotFound");
    expect(await codeOf(owner.meta.leaveSharedFolder({ path: "/Team" }))).toBe("FailedPrecondition");
    await upload(other, "/mine/notes.bin", randomBytes(100));
    expect(await codeOf(other.meta.leaveSharedFolder({ path: "/mine" }))).toBe("FailedPrecondition");
    expect(await codeOf(other.meta.leaveSharedFolder({ path: "/" }))).toBe("FailedPrecondition");
    // A viewer may leave too.
    await other.meta.leaveSharedFolder({ path: "/Team" });
    expect((await owner.meta.listMembers({ path: "/Team" })).members.map((m) => m.username)).toEqual([ownerAccount.username]);
  });
});

describe("share links", () => {
  it("a file link downloads byte-identical content over plain HTTP; a folder link lists entries whose URLs download", async () => {
    const owner = await deviceOf(await createAccount(endpoints, "linker"));
    const photo = randomBytes(300_000);
    await upload(owner, "/links/photo.bin", photo);
    const album = { "one.bin": randomBytes(70_000), "two words.txt": randomBytes(1_000) };
    for (const [name, data] of Object.entries(album)) await upload(owner, `/links/album/${name}`, data);
    await owner.meta.createFolder({ path: "/links/album/sub" });

    const fileLink = await owner.meta.createShareLink({ path: "/links/photo.bin" });
    expect(fileLink.url.startsWith(`${endpoints.shareLinks}/s/`)).toBe(true);
    const file = await fetchBytes(fileLink.url);
    expect(file.status).toBe(200);
    expect(file.body.length).toBe(photo.length);
    expect(hex(sha(file.body))).toBe(hex(sha(photo)));

    const folderLink = await owner.meta.createShareLink({ path: "/links/album" });
    const listing = await fetchBytes(folderLink.url);
    expect(listing.status).toBe(200);
    expect(listing.type).toMatch(/^application\/json/);
    const { entries } = JSON.parse(listing.body.toString()) as { entries: { name: string; isFolder: boolean; size: number; url: string }[] };
    expect(entries.map((e) => [e.name, e.isFolder, e.size]).sort()).toEqual([
      ["one.bin", false, album["one.bin"].length], ["sub", true, 0], ["two words.txt", false, album["two words.txt"].length],
    ].sort());
    for (const entry of entries.filter((e) => !e.isFolder)) {
      const got = await fetchBytes(new URL(entry.url, folderLink.url).toString());
      expect(got.status).toBe(200);
      expect(hex(sha(got.body))).toBe(hex(sha(album[entry.name as keyof typeof album])));
    }
    // Nothing outside the linked folder is reachable through it.
    const escape = await fetchBytes(`${folderLink.url}/..%2Fphoto.bin`);
    expect(escape.status).not.toBe(200);
  });

  it("a revoked link answers 410, a tampered token 404, an expired link 410", async () => {
    const owner = await deviceOf(await createAccount(endpoints, "revoker"));
    const data = randomBytes(5_000);
    await upload(owner, "/doc.bin", data);

    const link = await owner.meta.createShareLink({ path: "/doc.bin" });
    expect((await fetchBytes(link.url)).status).toBe(200);
    // Another user cannot revoke it.
    const stranger = await deviceOf(await createAccount(endpoints, "stranger"));
    expect(await codeOf(stranger.meta.revokeShareLink({ linkId: link.linkId }))).toBe("NotFound");
    expect((await fetchBytes(link.url)).status).toBe(200);
    await owner.meta.revokeShareLink({ linkId: link.linkId });
    expect((await fetchBytes(link.url)).status).toBe(410);

    const live = await owner.meta.createShareLink({ path: "/doc.bin" });
    const token = live.url.slice(live.url.lastIndexOf("/s/") + 3);
    const [id, expiry, mac] = token.split(".");
    const flipped = `${mac.startsWith("A") ? "B" : "A"}${mac.slice(1)}`;
    const base = live.url.slice(0, live.url.lastIndexOf("/s/") + 3);
    for (const forged of [`${id}.${expiry}.${flipped}`, `${BigInt(id) + 1n}.${expiry}.${mac}`, `${id}.${Number(expiry) + 3600}.${mac}`]) {
      expect((await fetchBytes(`${base}${forged}`)).status).toBe(404);
    }
    expect((await fetchBytes(live.url)).status).toBe(200);

    const brief = await owner.meta.createShareLink({ path: "/doc.bin", expiresInSeconds: 1 });
    await sleep(2_100);
    expect((await fetchBytes(brief.url)).status).toBe(410);
  });
});

describe("share links end with their creator's access", () => {
  /** An owner with a shared folder holding one file, an editor and a viewer of it. */
  async function team(name: string) {
    const [owner, editor, viewer] = await Promise.all(["o", "e", "v"].map(async (r) => deviceOf(await createAccount(endpoints, `${name}${r}`))));
    const data = randomBytes(4_000);
    await upload(owner, `/${name}/plan.bin`, data);
    await owner.meta.shareFolder({ path: `/${name}`, username: editor.account.username, role: Role.EDITOR });
    await owner.meta.shareFolder({ path: `/${name}`, username: viewer.account.username, role: Role.VIEWER });
    return { owner, editor, viewer, data, folder: `/${name}`, file: `/${name}/plan.bin` };
  }
  const statusOf = async (url: string) => (await fetchBytes(url)).status;
  /** The gateway sees a membership's end within the metaserver's two-second mount cache. */
  const ends = async (url: string) => {
    const deadline = Date.now() + 5_000;
    while ((await statusOf(url)) === 200 && Date.now() < deadline) await sleep(250);
    return statusOf(url);
  };

  it("owners and editors may make links; a viewer only where the owner allows; an expiry past the server's maximum is refused", async () => {
    const t = await team("linkrole");
    expect(await statusOf((await t.owner.meta.createShareLink({ path: t.file })).url)).toBe(200);
    expect(await statusOf((await t.editor.meta.createShareLink({ path: t.file })).url)).toBe(200);
    expect(await codeOf(t.viewer.meta.createShareLink({ path: t.file }))).toBe("PermissionDenied");
    expect((await t.owner.meta.listMembers({ path: t.folder })).viewersMayCreateLinks).toBe(false);
    // Only the owner decides.
    expect(await codeOf(t.editor.meta.setLinkPolicy({ path: t.folder, viewersMayCreateLinks: true }))).toBe("PermissionDenied");
    expect(await codeOf(t.viewer.meta.setLinkPolicy({ path: t.folder, viewersMayCreateLinks: true }))).toBe("PermissionDenied");
    await t.owner.meta.setLinkPolicy({ path: t.folder, viewersMayCreateLinks: true });
    const byViewer = await t.viewer.meta.createShareLink({ path: t.file });
    expect(await statusOf(byViewer.url)).toBe(200);
    // Turned off again: the viewer's link ends, and no new one is made.
    await t.owner.meta.setLinkPolicy({ path: t.folder, viewersMayCreateLinks: false });
    expect(await statusOf(byViewer.url)).toBe(410);
    expect(await codeOf(t.viewer.meta.createShareLink({ path: t.file }))).toBe("PermissionDenied");

    // The default and the maximum (365 days unless configured).
    const plain = await t.owner.meta.createShareLink({ path: t.file });
    const days = (Number(plain.expireTime!.seconds) * 1000 - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThan(7.1);
    const century = await t.owner.meta.createShareLink({ path: t.file, expiresInSeconds: 4_000_000_000 }).catch((e) => ConnectError.from(e));
    expect(century).toBeInstanceOf(ConnectError);
    expect((century as ConnectError).code).toBe(Code.InvalidArgument);
    expect((century as ConnectError).rawMessage).toMatch(/at most 31536000/);
    expect(await statusOf((await t.owner.meta.createShareLink({ path: t.file, expiresInSeconds: 365 * 86400 })).url)).toBe(200);
  });

  it("a member's link stops working when the member is removed or leaves; the owner's links go on", async () => {
    const t = await team("linkend");
    await t.owner.meta.setLinkPolicy({ path: t.folder, viewersMayCreateLinks: true });
    const [byOwner, byEditor, byViewer] = await Promise.all([t.owner, t.editor, t.viewer].map((d) => d.meta.createShareLink({ path: t.file })));
    const folderLink = await t.editor.meta.createShareLink({ path: t.folder });
    for (const l of [byOwner, byEditor, byViewer, folderLink]) expect(await statusOf(l.url)).toBe(200);
    await t.owner.meta.unshare({ path: t.folder, username: t.editor.account.username });
    expect(await ends(byEditor.url)).toBe(410);
    expect(await ends(folderLink.url)).toBe(410);
    expect((await fetchBytes(`${folderLink.url}/plan.bin`)).status).toBe(410);
    await t.viewer.meta.leaveSharedFolder({ path: t.folder });
    expect(await ends(byViewer.url)).toBe(410);
    const got = await fetchBytes(byOwner.url);
    expect(got.status).toBe(200);
    expect(got.body.equals(t.data)).toBe(true);
    // Moved out of the linked path's reach: the link finds nothing there.
    await t.owner.meta.move({ fromPath: t.file, toPath: `${t.folder}/moved.bin` });
    expect(await statusOf(byOwner.url)).toBe(404);
  });

  it("owners and editors list a path's links, see whether each works, and revoke any; viewers and others cannot", async () => {
    const t = await team("linklist");
    await t.owner.meta.setLinkPolicy({ path: t.folder, viewersMayCreateLinks: true });
    const byEditor = await t.editor.meta.createShareLink({ path: t.file });
    const byViewer = await t.viewer.meta.createShareLink({ path: t.file });
    const onFolder = await t.owner.meta.createShareLink({ path: t.folder });
    const listed = await t.owner.meta.listShareLinks({ path: t.file });
    expect(listed.links.map((l) => l.linkId).sort()).toEqual([byEditor.linkId, byViewer.linkId].sort());
    expect(listed.links.every((l) => l.path === t.file && l.works && l.url === "")).toBe(true);
    expect(listed.links.find((l) => l.linkId === byEditor.linkId)!.createdBy).toBe(t.editor.account.username);
    const all = await t.editor.meta.listShareLinks({ path: t.folder, recursive: true });
    expect(all.links.map((l) => l.linkId).sort()).toEqual([byEditor.linkId, byViewer.linkId, onFolder.linkId].sort());
    // One's own links carry their URL.
    expect(all.links.find((l) => l.linkId === byEditor.linkId)!.url).toBe(byEditor.url);
    expect(await codeOf(t.viewer.meta.listShareLinks({ path: t.file }))).toBe("PermissionDenied");
    const stranger = await deviceOf(await createAccount(endpoints, "linkstranger"));
    expect(await codeOf(stranger.meta.listShareLinks({ path: t.file }))).toBe("NotFound");
    // Nobody outside revokes: not a stranger, not a viewer (someone else's link).
    expect(await codeOf(stranger.meta.revokeShareLink({ linkId: byEditor.linkId }))).toBe("NotFound");
    expect(await codeOf(t.viewer.meta.revokeShareLink({ linkId: byEditor.linkId }))).toBe("NotFound");
    // The owner revokes the editor's link; the editor revokes the viewer's.
    await t.owner.meta.revokeShareLink({ linkId: byEditor.linkId });
    await t.editor.meta.revokeShareLink({ linkId: byViewer.linkId });
    expect(await statusOf(byEditor.url)).toBe(410);
    expect(await statusOf(byViewer.url)).toBe(410);
    expect((await t.owner.meta.listShareLinks({ path: t.folder, recursive: true })).links.map((l) => l.linkId)).toEqual([onFolder.linkId]);
    // A link whose creator lost access is listed as ended, with the reason.
    const again = await t.editor.meta.createShareLink({ path: t.file });
    await t.owner.meta.unshare({ path: t.folder, username: t.editor.account.username });
    await ends(again.url);
    const ended = (await t.owner.meta.listShareLinks({ path: t.file })).links.find((l) => l.linkId === again.linkId)!;
    expect(ended).toMatchObject({ works: false, endedBecause: expect.stringMatching(/no longer has access/) });
  });

  it("the gateway limits requests per client address: a flood from one gets 429 with Retry-After, others are served", async () => {
    // A metaserver of its own with a tight link limit (10, then 2 a second): a loaded machine cannot
    // serve links slowly enough to stay under it. Its links point at its own gateway.
    const extra = new MetaserverProcesses(endpoints, stateDir);
    const tight = await extra.start("metaserver-link-limit", 113, { SATCHEL_RATE_LIMITS: JSON.stringify({ links: { perSecond: 2, burst: 10 } }) });
    try {
      await flood(tight.url);
    } finally {
      await extra.stopAll();
    }
  });

  async function flood(metaserverUrl: string) {
    const account = await createAccount(endpoints, "linkflood");
    const owner = { ...(await deviceOf(account)) };
    owner.meta = createClient(MetaService, createSatchelTransport({ baseUrl: metaserverUrl, token: await signIn(endpoints, account, "flood") }));
    await upload(owner, "/tiny.bin", randomBytes(100));
    const link = await owner.meta.createShareLink({ path: "/tiny.bin" });
    // From 127.0.0.2: another client address on loopback, so other tests' requests keep their own budget.
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    await Promise.all(Array.from({ length: 5 }, async () => {
      for (let i = 0; i < 12; i++) {
        const r = await httpGet(link.url, undefined, 15_000, "127.0.0.2");
        statuses.push(r.status);
        if (r.status === 429) retryAfter ??= String(r.headers["retry-after"]);
      }
    }));
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    // Another address is served meanwhile.
    expect((await fetchBytes(link.url)).status).toBe(200);
    await sleep(Number(retryAfter) * 1000);
    expect((await httpGet(link.url, undefined, 15_000, "127.0.0.2")).status).toBe(200);
  }
});
