import { randomBytes } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { MetaAdminService, MetaService, Role } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { createAccount, deviceOf, readBack, signIn, storeBlocks, type Device, type TestAccount } from "./index.js";

/**
 * The cross-tenant matrix (issue 14): for every RPC of every Satchel service, user B presents
 * what identifies A's things — namespace ids, paths, cursors, revisions, block hashes and grants,
 * device ids, share-link ids — and is refused (PERMISSION_DENIED or NOT_FOUND). Each refusal is
 * compared with the answer to the same call naming something that never existed: the two must be
 * the same code and the same message (the identifier aside), so no answer tells B whether A's
 * thing exists. Calls that name nothing of another user's act on B's own things only; A's things
 * are checked unchanged at the end. A method missing from the matrix fails the test.
 */
const { endpoints } = inject("cluster");
const NEVER = 4_611_686_018_427_387_000n;

interface Refused {
  /** B's call naming A's thing, and the same call naming a thing that never existed. */
  theirs: () => Promise<unknown>;
  never: () => Promise<unknown>;
  /** The identifiers in the two calls (replaced before the messages are compared). */
  ids?: [string, string];
}
/** A call that names no one else's thing: it must succeed for B, on B's own things. */
interface Own {
  own: () => Promise<void>;
}
type Row = Refused | Own;

async function outcome(call: () => Promise<unknown>): Promise<{ code: Code | "OK"; message: string }> {
  try {
    const r = call();
    // A server stream: read its first message (or its error).
    const stream = r as unknown as AsyncIterable<unknown>;
    if (!(r instanceof Promise) && typeof stream[Symbol.asyncIterator] === "function") {
      for await (const _ of stream) break;
    } else await r;
    return { code: "OK", message: "" };
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage };
  }
}

let alice: TestAccount;
let bob: TestAccount;
let a: Device;
let b: Device;
const A = {} as {
  root: bigint; team: bigint; cursor: bigint; path: string; revision: bigint; block: { hash: Uint8Array; size: number; grant: Uint8Array };
  data: Buffer; device: bigint; link: bigint;
};

beforeAll(async () => {
  const carol = await createAccount(endpoints, "carol");
  [alice, bob] = await Promise.all([createAccount(endpoints, "alice"), createAccount(endpoints, "bob")]);
  a = await deviceOf(endpoints, alice, "a-laptop");
  b = await deviceOf(endpoints, bob, "b-laptop");
  A.data = randomBytes(30_000);
  const blocks = await storeBlocks(a, A.data);
  A.path = "/private/diary.bin";
  const first = await a.meta.commitFile({ path: A.path, blocks, size: BigInt(A.data.length) });
  const second = await a.meta.commitFile({ path: A.path, blocks, size: BigInt(A.data.length), parentRevision: first.file!.revision });
  A.revision = first.file!.revision;
  A.block = second.file!.blocks[0];
  await a.meta.createFolder({ path: "/Team" });
  A.team = (await a.meta.shareFolder({ path: "/Team", username: carol.username, role: Role.EDITOR })).namespaceId;
  const namespaces = (await a.meta.listNamespaces({})).namespaces;
  A.root = namespaces.find((n) => n.path === "/")!.namespaceId;
  A.cursor = namespaces.find((n) => n.path === "/")!.cursor;
  A.link = (await a.meta.createShareLink({ path: A.path })).linkId;
  A.device = (await createClient(AuthService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: a.token })).listDevices({})).devices[0].deviceId;
}, 60_000);

function matrix(): Map<DescService, Record<string, Row>> {
  const bAuth = createClient(AuthService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: b.token }));
  const bNotify = createClient(NotifyService, createSatchelTransport({ baseUrl: endpoints.notifyserver, token: b.token }));
  const bMetaAdmin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: b.token }));
  const bBlockAdmin = createClient(BlockAdminService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: b.token }));
  const ns = (id: bigint): [string, string] => [String(id), String(NEVER)];
  const otherHash = randomBytes(32);
  const hexes: [string, string] = [Buffer.from(A.block.hash).toString("hex"), otherHash.toString("hex")];
  const m = b.meta;
  const refusedPath = (call: (path: string) => Promise<unknown>): Refused => ({ theirs: () => call(A.path), never: () => call("/never/was.bin") });
  const adminRows = (svc: DescService, client: Record<string, (req: object) => Promise<unknown>>) =>
    Object.fromEntries(svc.methods.map((meth) => [meth.name, { theirs: () => client[meth.localName]({}), never: () => client[meth.localName]({}) } satisfies Refused]));
  return new Map<DescService, Record<string, Row>>([
    [MetaService, {
      // B's paths are B's tree: A's path names nothing there, exactly like a path that never was.
      CommitFile: { theirs: () => m.commitFile({ path: "/x.bin", blocks: [A.block], size: BigInt(A.block.size) }).then(missing),
        never: () => m.commitFile({ path: "/x.bin", blocks: [{ ...A.block, hash: otherHash }], size: BigInt(A.block.size) }).then(missing), ids: hexes },
      // In a batch as alone: A's block (with A's grant) is missing to B, like a hash that never was.
      CommitBatch: { theirs: () => m.commitBatch({ changes: [{ change: { case: "commit", value: { path: "/x.bin", blocks: [A.block], size: BigInt(A.block.size) } } }] }).then(missingInBatch),
        never: () => m.commitBatch({ changes: [{ change: { case: "commit", value: { path: "/x.bin", blocks: [{ ...A.block, hash: otherHash }], size: BigInt(A.block.size) } } }] }).then(missingInBatch), ids: hexes },
      GetFileMetadata: { theirs: () => m.getFileMetadata({ path: A.path, revision: A.revision }), never: () => m.getFileMetadata({ path: "/never/was.bin", revision: NEVER }), ids: [`${A.path}" has no kept revision ${A.revision}`, `/never/was.bin" has no kept revision ${NEVER}`] },
      ListFolder: { theirs: () => m.listFolder({ path: "/private" }), never: () => m.listFolder({ path: "/never" }), ids: ["/private", "/never"] },
      CreateFolder: { own: async () => void (await m.createFolder({ path: "/mine" })) },
      Delete: { ...refusedPath((path) => m.delete({ path })), ids: [A.path, "/never/was.bin"] },
      Undelete: { ...refusedPath((path) => m.undelete({ path })), ids: [A.path, "/never/was.bin"] },
      PermanentlyDelete: { ...refusedPath((path) => m.permanentlyDelete({ path })), ids: [A.path, "/never/was.bin"] },
      Move: { theirs: () => m.move({ fromPath: A.path, toPath: "/mine.bin" }), never: () => m.move({ fromPath: "/never/was.bin", toPath: "/mine.bin" }), ids: [A.path, "/never/was.bin"] },
      ListRevisions: { ...refusedPath((path) => m.listRevisions({ path })), ids: [A.path, "/never/was.bin"] },
      Restore: { theirs: () => m.restore({ path: A.path, revision: A.revision }), never: () => m.restore({ path: A.path, revision: NEVER }), ids: [String(A.revision), String(NEVER)] },
      ListNamespaces: { own: async () => expect((await m.listNamespaces({})).namespaces.map((n) => n.path)).toEqual(["/"]) },
      ListDelta: { theirs: () => m.listDelta({ namespaceId: A.root, cursor: A.cursor }), never: () => m.listDelta({ namespaceId: NEVER, cursor: A.cursor }), ids: ns(A.root) },
      WaitForChange: { theirs: () => m.waitForChange({ cursors: [{ namespaceId: A.team, cursor: 0n }], timeoutSeconds: 1 }),
        never: () => m.waitForChange({ cursors: [{ namespaceId: NEVER, cursor: 0n }], timeoutSeconds: 1 }), ids: ns(A.team) },
      ShareFolder: { theirs: () => m.shareFolder({ path: "/Team", username: alice.username, role: Role.EDITOR }),
        never: () => m.shareFolder({ path: "/Never", username: alice.username, role: Role.EDITOR }), ids: ["/Team", "/Never"] },
      Unshare: { theirs: () => m.unshare({ path: "/Team", username: alice.username }), never: () => m.unshare({ path: "/Never", username: alice.username }), ids: ["/Team", "/Never"] },
      LeaveSharedFolder: { theirs: () => m.leaveSharedFolder({ path: "/Team" }), never: () => m.leaveSharedFolder({ path: "/Never" }), ids: ["/Team", "/Never"] },
      ListMembers: { theirs: () => m.listMembers({ path: "/Team" }), never: () => m.listMembers({ path: "/Never" }), ids: ["/Team", "/Never"] },
      CreateShareLink: { ...refusedPath((path) => m.createShareLink({ path })), ids: [A.path, "/never/was.bin"] },
      RevokeShareLink: { theirs: () => m.revokeShareLink({ linkId: A.link }), never: () => m.revokeShareLink({ linkId: NEVER }), ids: ns(A.link) },
      ListShareLinks: { ...refusedPath((path) => m.listShareLinks({ path })), ids: [A.path, "/never/was.bin"] },
      SetLinkPolicy: { theirs: () => m.setLinkPolicy({ path: "/Team", viewersMayCreateLinks: true }), never: () => m.setLinkPolicy({ path: "/Never", viewersMayCreateLinks: true }), ids: ["/Team", "/Never"] },
      GetSpaceUsage: { own: async () => expect((await m.getSpaceUsage({})).usedBytes).toBe(0n) },
    }],
    [AuthService, {
      // Account creation and sign-in take no one's identifiers but a name and a password.
      CreateAccount: { own: async () => void (await createAccount(endpoints, "matrix")) },
      Login: { own: async () => void (await signIn(endpoints, bob, "b-phone")) },
      // A refresh token is the device's secret, not an identifier: B refreshes its own.
      Refresh: { own: async () => {
        const { tokens } = await bAuth.login({ username: bob.username, password: bob.password, deviceName: "b-tablet" });
        expect((await bAuth.refresh({ refreshToken: tokens!.refreshToken })).tokens?.accessToken).toBeTruthy();
      } },
      ListDevices: { own: async () => expect((await bAuth.listDevices({})).devices.map((d) => d.deviceId)).not.toContain(A.device) },
      RevokeDevice: { theirs: () => bAuth.revokeDevice({ deviceId: A.device }), never: () => bAuth.revokeDevice({ deviceId: NEVER }), ids: ns(A.device) },
    }],
    [MetaAdminService, adminRows(MetaAdminService, bMetaAdmin as never)],
    [BlockService, {
      // B cannot put other bytes under A's hash; its own bytes it may put.
      PutBlock: { own: async () => {
        expect((await outcome(() => b.blocks.putBlock({ hash: Buffer.from(A.block.hash), data: randomBytes(10) }))).code).toBe(Code.InvalidArgument);
        await storeBlocks(b, randomBytes(100));
      } },
      GetBlock: { theirs: () => b.blocks.getBlock({ hash: A.block.hash, grant: A.block.grant }), never: () => b.blocks.getBlock({ hash: otherHash, grant: A.block.grant }), ids: hexes },
      HasBlocks: { own: async () => expect((await b.blocks.hasBlocks({ hashes: [A.block.hash], grants: [A.block.grant] })).present).toEqual([false]) },
      ReserveBlocks: { theirs: () => b.blocks.reserveBlocks({ hashes: [A.block.hash] }), never: () => b.blocks.reserveBlocks({ hashes: [otherHash] }) },
      AdjustReferences: { theirs: () => b.blocks.adjustReferences({ source: "b", changes: [{ sequence: 1n, hash: A.block.hash, delta: -1 }] }),
        never: () => b.blocks.adjustReferences({ source: "b", changes: [{ sequence: 1n, hash: otherHash, delta: -1 }] }) },
    }],
    [BlockAdminService, adminRows(BlockAdminService, bBlockAdmin as never)],
    [NotifyService, {
      Subscribe: { theirs: () => bNotify.subscribe({ namespaceIds: [A.root] }) as never, never: () => bNotify.subscribe({ namespaceIds: [NEVER] }) as never, ids: ns(A.root) },
      Poll: { theirs: () => bNotify.poll({ cursors: [{ namespaceId: A.team, cursor: 0n }] }), never: () => bNotify.poll({ cursors: [{ namespaceId: NEVER, cursor: 0n }] }), ids: ns(A.team) },
    }],
  ]);
}

/** A batch's one commit, refused or told its blocks are missing: a refusal, as alone. */
function missingInBatch(res: { results: { code: number; message: string; result: { case: string | undefined; value?: unknown } }[] }): never {
  const [r] = res.results;
  if (r.code !== 0) throw new ConnectError(r.message, r.code as Code);
  return missing(r.result.value as { missingBlocks: Uint8Array[]; file?: unknown });
}

/** A commit told its blocks are missing committed nothing: that is a refusal, as NOT_FOUND. */
function missing(res: { missingBlocks: Uint8Array[]; file?: unknown }): never {
  if (res.file) throw new Error("committed");
  throw new ConnectError(`missing ${res.missingBlocks.map((h) => Buffer.from(h).toString("hex")).join(",")}`, Code.NotFound);
}

describe("cross-tenant matrix: every RPC, with another user's identifiers", () => {
  it("refuses B everything of A's, exactly as it refuses what never existed; covers every method", async () => {
    const rows = matrix();
    const failures: string[] = [];
    for (const [svc, methods] of rows) {
      for (const method of svc.methods) {
        const row = methods[method.name];
        const name = `${svc.name}/${method.name}`;
        if (!row) {
          failures.push(`${name}: not in the matrix`);
          continue;
        }
        if ("own" in row) {
          await row.own().catch((e: unknown) => failures.push(`${name}: B's own call failed: ${String(e)}`));
          continue;
        }
        const [theirs, never] = [await outcome(row.theirs), await outcome(row.never)];
        if (theirs.code !== Code.PermissionDenied && theirs.code !== Code.NotFound) failures.push(`${name}: answered ${theirs.code === "OK" ? "OK" : Code[theirs.code]} (${theirs.message})`);
        const same = (msg: string, id?: string) => (id ? msg.split(id).join("<id>") : msg);
        if (theirs.code !== never.code || same(theirs.message, row.ids?.[0]) !== same(never.message, row.ids?.[1])) {
          failures.push(`${name}: A's thing and a thing that never was get different answers: ${JSON.stringify(theirs)} vs ${JSON.stringify(never)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it("A's things are as they were: file, versions, blocks, share link, device", async () => {
    const { file } = await a.meta.getFileMetadata({ path: A.path });
    expect(file!.isDeleted).toBe(false);
    expect((await readBack(a, file!.blocks)).equals(A.data)).toBe(true);
    expect((await a.meta.listRevisions({ path: A.path })).revisions).toHaveLength(2);
    expect((await a.meta.listMembers({ path: "/Team" })).members.length).toBe(2);
    const auth = createClient(AuthService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: a.token }));
    expect((await auth.listDevices({})).devices.map((d) => d.deviceId)).toContain(A.device);
    expect((await a.meta.revokeShareLink({ linkId: A.link }))).toBeDefined();
  });
});
