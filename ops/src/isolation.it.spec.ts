import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { BlockGrants, createSatchelTransport } from "@satchel/proto";
import { BlockAdminService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { Role } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { SatchelClient } from "@satchel/client-sdk";
import { createAccount, deviceOf, readBack, storeBlocks, type Device, type TestAccount } from "./index.js";

/**
 * Tenant isolation of blocks (issue 14): a content hash is not a capability. Two ordinary
 * accounts on the real cluster; B has no share from A unless a test gives one.
 */
const { endpoints } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();

/** "OK", or the status a call ended with, by name, and its message. */
async function outcome(call: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await call;
    return { code: "OK", message: "" };
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: Code[e.code], message: e.rawMessage };
  }
}

let alice: TestAccount;
let bob: TestAccount;
let a: Device;
let b: Device;
let aFile: { path: string; data: Buffer; blocks: { hash: Uint8Array; size: number; grant: Uint8Array }[] };
const admin = createClient(BlockAdminService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken }));

beforeAll(async () => {
  [alice, bob] = await Promise.all([createAccount(endpoints, "alice"), createAccount(endpoints, "bob")]);
  a = await deviceOf(endpoints, alice, "a-laptop");
  b = await deviceOf(endpoints, bob, "b-laptop");
  const data = randomBytes(200_000);
  const blocks = await storeBlocks(a, data);
  const res = await a.meta.commitFile({ path: "/private/diary.bin", blocks, size: BigInt(data.length) });
  expect(res.missingBlocks).toEqual([]);
  aFile = { path: "/private/diary.bin", data, blocks: res.file!.blocks.map((r) => ({ hash: r.hash, size: r.size, grant: r.grant })) };
});

describe("a block is readable only by someone who may read a file that holds it", () => {
  it("the owner reads with the grants its metadata carries; without them even the owner is refused", async () => {
    expect((await readBack(a, aFile.blocks)).equals(aFile.data)).toBe(true);
    const { file } = await a.meta.getFileMetadata({ path: aFile.path });
    expect(file!.blocks.every((r) => r.grant.length > 0)).toBe(true);
    expect((await outcome(a.blocks.getBlock({ hash: aFile.blocks[0].hash }))).code).toBe("PermissionDenied");
  });

  it("B gets PERMISSION_DENIED for A's block: without a grant, with A's grant, with its own grant for another block, with a forged one", async () => {
    const hash = aFile.blocks[0].hash;
    const own = await storeBlocks(b, randomBytes(1000));
    const forged = Buffer.from(aFile.blocks[0].grant);
    forged[forged.length - 1] ^= 1;
    for (const grant of [new Uint8Array(0), aFile.blocks[0].grant, own[0].grant, forged, randomBytes(40)]) {
      expect((await outcome(b.blocks.getBlock({ hash, grant }))).code).toBe("PermissionDenied");
    }
  });

  it("the refusal is the same for a block that exists and one that never did: no existence oracle", async () => {
    const existing = await outcome(b.blocks.getBlock({ hash: aFile.blocks[0].hash }));
    const never = await outcome(b.blocks.getBlock({ hash: sha(randomBytes(32)) }));
    expect(existing.code).toBe(never.code);
    const hexOf = (m: string) => m.replace(/[0-9a-f]{64}/, "<hash>");
    expect(hexOf(existing.message)).toBe(hexOf(never.message));
  });

  it("HasBlocks says present only for blocks the caller has shown it holds, with a grant for each", async () => {
    const [hash, grant] = [aFile.blocks[0].hash, aFile.blocks[0].grant];
    const toB = await b.blocks.hasBlocks({ hashes: [hash, sha(randomBytes(8))] });
    expect(toB.present).toEqual([false, false]);
    expect(toB.grants.map((g) => g.length)).toEqual([0, 0]);
    expect((await b.blocks.hasBlocks({ hashes: [hash], grants: [grant] })).present).toEqual([false]);
    // A sent these bytes itself a moment ago: present to A, with a grant it can read with.
    const toA = await a.blocks.hasBlocks({ hashes: [hash] });
    expect(toA.present).toEqual([true]);
    expect(Buffer.from((await a.blocks.getBlock({ hash, grant: toA.grants[0] })).data).equals(aFile.data.subarray(0, aFile.blocks[0].size))).toBe(true);
    expect((await a.blocks.hasBlocks({ hashes: [hash], grants: [grant] })).present).toEqual([true]);
    expect((await outcome(a.blocks.hasBlocks({ hashes: [hash, hash], grants: [grant] }))).code).toBe("InvalidArgument");
  });

  it("an expired grant is refused; the SDK fetches fresh grants (checking access again) and downloads", async () => {
    const grants = new BlockGrants(endpoints.grantKeys, 300);
    const { file } = await a.meta.getFileMetadata({ path: aFile.path });
    // A grant as the metaserver would have issued it a while ago (the test knows the cluster's keys).
    const lapsed = (hash: Uint8Array) => grants.issue(alice.userId.toString(), hash, Math.floor(Date.now() / 1000) - 1);
    const old = lapsed(file!.blocks[0].hash);
    const refused = await outcome(a.blocks.getBlock({ hash: file!.blocks[0].hash, grant: old }));
    expect(refused).toMatchObject({ code: "PermissionDenied", message: expect.stringMatching(/expired/) });
    const sdk = new SatchelClient({ metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver, token: a.token });
    for (const r of file!.blocks) r.grant = lapsed(r.hash);
    const into = join(mkdtempSync(join(tmpdir(), "isolation-")), "diary.bin");
    await sdk.downloadVersion(file!, into);
    expect(readFileSync(into).equals(aFile.data)).toBe(true);
  });
});

describe("no claim by hash (Dropship)", () => {
  it("a commit naming A's block hashes without proof is told they are missing: nothing is committed, no reference moves", async () => {
    const counts = async () => (await admin.getReferenceCounts({ hashes: aFile.blocks.map((r) => r.hash) })).counts.map((x) => x.refCount);
    const before = await counts();
    const size = BigInt(aFile.data.length);
    const attempts = [
      aFile.blocks.map((r) => ({ hash: r.hash, size: r.size })),
      aFile.blocks, // A's own grants, stolen
    ];
    for (const blocks of attempts) {
      const res = await b.meta.commitFile({ path: "/stolen.bin", blocks, size });
      expect(res.file).toBeUndefined();
      expect(res.missingBlocks.map((h) => Buffer.from(h).toString("hex")).sort()).toEqual(aFile.blocks.map((r) => Buffer.from(r.hash).toString("hex")).sort());
    }
    // A parent revision names a version of the caller's own namespace, never A's.
    const aRevision = (await a.meta.getFileMetadata({ path: aFile.path })).file!.revision;
    const viaParent = await b.meta.commitFile({ path: "/stolen.bin", blocks: attempts[0], size, parentRevision: aRevision });
    expect(viaParent.file).toBeUndefined();
    expect(viaParent.missingBlocks).toHaveLength(aFile.blocks.length);
    expect((await outcome(b.meta.getFileMetadata({ path: "/stolen.bin" }))).code).toBe("NotFound");
    // Give the relay time to move counts if anything had been committed.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await counts()).toEqual(before);
  });

  it("B, holding the same bytes, sends them once: stored once, not told A had them, and then reads its own copy", async () => {
    const stored = await storeBlocks(b, aFile.data);
    const res = await b.meta.commitFile({ path: "/same.bin", blocks: stored, size: BigInt(aFile.data.length) });
    expect(res.missingBlocks).toEqual([]);
    expect((await readBack(b, res.file!.blocks)).equals(aFile.data)).toBe(true);
    const put = await b.blocks.putBlock({ hash: aFile.blocks[0].hash, data: aFile.data.subarray(0, aFile.blocks[0].size) });
    expect(put.alreadyStored).toBe(false);
    // Having sent them, B is told it holds them; a third user still is not.
    expect((await b.blocks.hasBlocks({ hashes: [aFile.blocks[0].hash] })).present).toEqual([true]);
    const carol = await deviceOf(endpoints, await createAccount(endpoints, "carol"), "c-laptop");
    expect((await carol.blocks.hasBlocks({ hashes: [aFile.blocks[0].hash] })).present).toEqual([false]);
  });

  it("the SDK uploads an edit sending only the changed blocks: the parent's blocks need no proof", async () => {
    const sdk = new SatchelClient({ metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver, token: a.token });
    const dir = mkdtempSync(join(tmpdir(), "isolation-"));
    const local = join(dir, "big.bin");
    const original = randomBytes(12 * 1024 * 1024);
    writeFileSync(local, original);
    const first = await sdk.upload(local, "/big.bin");
    const edited = Buffer.concat([original, randomBytes(1000)]);
    writeFileSync(local, edited);
    let sent = 0;
    const second = await sdk.upload(local, "/big.bin", (p) => (sent = p.bytesTransferred));
    // Exactly the blocks the first version lacks were sent.
    const before = new Set(first.blocks.map((r) => Buffer.from(r.hash).toString("hex")));
    const fresh = second.blocks.filter((r) => !before.has(Buffer.from(r.hash).toString("hex")));
    expect(fresh.length).toBeLessThan(second.blocks.length);
    expect(sent).toBe(fresh.reduce((n, r) => n + r.size, 0));
    const back = join(dir, "back.bin");
    await sdk.download("/big.bin", back);
    expect(readFileSync(back).equals(edited)).toBe(true);
  });
});

describe("shared folders", () => {
  it("a member reads through the folder's grants; once removed, fresh grants are refused", async () => {
    const data = randomBytes(50_000);
    const blocks = await storeBlocks(a, data);
    await a.meta.createFolder({ path: "/Team" });
    await a.meta.commitFile({ path: "/Team/plan.bin", blocks, size: BigInt(data.length) });
    await a.meta.shareFolder({ path: "/Team", username: bob.username, role: Role.VIEWER });
    const shared = (await b.meta.getFileMetadata({ path: "/Team/plan.bin" })).file!;
    expect((await readBack(b, shared.blocks)).equals(data)).toBe(true);
    await a.meta.unshare({ path: "/Team", username: bob.username });
    expect(["PermissionDenied", "NotFound"]).toContain((await outcome(b.meta.getFileMetadata({ path: "/Team/plan.bin", revision: shared.revision }))).code);
  });

  it("a removed member cannot renew its grants: HasBlocks hands a grant back unchanged, and access ends when it expires", async () => {
    const data = randomBytes(30_000);
    const blocks = await storeBlocks(a, data);
    await a.meta.createFolder({ path: "/Crew" });
    await a.meta.commitFile({ path: "/Crew/roster.bin", blocks, size: BigInt(data.length) });
    await a.meta.shareFolder({ path: "/Crew", username: bob.username, role: Role.EDITOR });
    const hash = (await b.meta.getFileMetadata({ path: "/Crew/roster.bin" })).file!.blocks[0].hash;
    // A grant as a metaserver with a 3-second grant lifetime issues it (the test knows the cluster's keys).
    let grant = new BlockGrants(endpoints.grantKeys, 3).issue(bob.userId.toString(), hash);
    await a.meta.unshare({ path: "/Crew", username: bob.username });
    // Bob keeps asking the blockserver, with the newest grant it has, until well past the expiry.
    const until = Date.now() + 4500;
    while (Date.now() < until) {
      const res = await b.blocks.hasBlocks({ hashes: [hash], grants: [grant] });
      if (res.present[0]) {
        expect(Buffer.from(res.grants[0]).equals(Buffer.from(grant))).toBe(true);
        grant = res.grants[0];
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(await outcome(b.blocks.getBlock({ hash, grant }))).toMatchObject({ code: "PermissionDenied", message: expect.stringMatching(/expired/) });
    expect((await b.blocks.hasBlocks({ hashes: [hash], grants: [grant] })).present).toEqual([false]);
  });
});
