import { createHash, randomBytes } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { MetaAdminService, MetaService, Role } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { caOf, createAccount, signIn, storeBlocks, type TestAccount } from "./index.js";

/**
 * The role matrix (issue 21): every RPC of every service, on the gRPC port and on the web port
 * (Connect), called by each kind of caller of one shared folder — its owner, an editor, a viewer,
 * a member the owner removed, another user, someone holding only a share link (its token as a
 * bearer), and someone signed out — and each answer checked against what that role may do. A
 * method missing from the matrix fails the test.
 */
const { endpoints } = inject("cluster");
const ROLES = ["owner", "editor", "viewer", "removed", "stranger", "linkHolder", "signedOut"] as const;
type Who = (typeof ROLES)[number];
/** ok: it works; denied: PERMISSION_DENIED or NOT_FOUND; forbidden: PERMISSION_DENIED; unauth: UNAUTHENTICATED; precondition: FAILED_PRECONDITION. */
type Want = "ok" | "denied" | "forbidden" | "unauth" | "precondition";
type Wants = Record<Who, Want>;

const signedOutToo = { linkHolder: "unauth", signedOut: "unauth" } as const;
const READ: Wants = { owner: "ok", editor: "ok", viewer: "ok", removed: "denied", stranger: "denied", ...signedOutToo };
const WRITE: Wants = { owner: "ok", editor: "ok", viewer: "forbidden", removed: "denied", stranger: "denied", ...signedOutToo };
const OWNER_ONLY: Wants = { owner: "ok", editor: "forbidden", viewer: "forbidden", removed: "denied", stranger: "denied", ...signedOutToo };
const OWN: Wants = { owner: "ok", editor: "ok", viewer: "ok", removed: "ok", stranger: "ok", ...signedOutToo };
const SERVICE_ONLY: Wants = { owner: "forbidden", editor: "forbidden", viewer: "forbidden", removed: "forbidden", stranger: "forbidden", ...signedOutToo };
const PUBLIC: Wants = { owner: "ok", editor: "ok", viewer: "ok", removed: "ok", stranger: "ok", linkHolder: "ok", signedOut: "ok" };

interface Clients {
  meta: Client<typeof MetaService>;
  auth: Client<typeof AuthService>;
  blocks: Client<typeof BlockService>;
  notify: Client<typeof NotifyService>;
  metaAdmin: Client<typeof MetaAdminService>;
  blockAdmin: Client<typeof BlockAdminService>;
}

/** What one port's run of the matrix works on: a shared folder of the owner's, and things in it per role. */
interface Fixture {
  port: "grpc" | "web";
  folder: string;
  /** For LeaveSharedFolder: a second folder shared with the editor and the viewer. */
  leave: string;
  namespaceId: bigint;
  file: string;
  revision: bigint;
  block: { hash: Uint8Array; grant: Uint8Array };
  /** A link of the owner's per role, for RevokeShareLink. */
  links: Record<Who, bigint>;
  linkToken: string;
  clients: Record<Who, Clients>;
}

let accounts: Record<"owner" | "editor" | "viewer" | "removed" | "stranger" | "extra", TestAccount>;
const tokens = {} as Record<Who, string | undefined>;

function transportOf(port: "grpc" | "web", service: "metaserver" | "blockserver" | "notifyserver", token: string | undefined): Transport {
  if (port === "grpc") return createSatchelTransport({ baseUrl: endpoints[service], token });
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createConnectTransport({ baseUrl: endpoints.web[service], httpVersion: "1.1", nodeOptions: { ca: caOf(endpoints) }, interceptors: token ? [bearer] : [] });
}

function clientsOf(port: "grpc" | "web", token: string | undefined): Clients {
  const meta = transportOf(port, "metaserver", token);
  const blocks = transportOf(port, "blockserver", token);
  return {
    meta: createClient(MetaService, meta), auth: createClient(AuthService, meta), metaAdmin: createClient(MetaAdminService, meta),
    blocks: createClient(BlockService, blocks), blockAdmin: createClient(BlockAdminService, blocks),
    notify: createClient(NotifyService, transportOf(port, "notifyserver", token)),
  };
}

beforeAll(async () => {
  const made = await Promise.all(["owner", "editor", "viewer", "removed", "stranger", "extra"].map((r) => createAccount(endpoints, `role-${r}`)));
  // "extra" is no caller: the one the owner shares with and removes in the ShareFolder and Unshare cases.
  accounts = { owner: made[0], editor: made[1], viewer: made[2], removed: made[3], stranger: made[4], extra: made[5] };
  for (const r of ["owner", "editor", "viewer", "removed", "stranger"] as const) tokens[r] = await signIn(endpoints, accounts[r], "matrix");
}, 60_000);

async function fixture(port: "grpc" | "web"): Promise<Fixture> {
  const owner = clientsOf("grpc", tokens.owner);
  const folder = `/Shared-${port}`;
  const leave = `/Leave-${port}`;
  const data = randomBytes(5_000);
  const blocks = await storeBlocks({ name: "owner", token: tokens.owner!, meta: owner.meta, blocks: owner.blocks }, data);
  await owner.meta.createFolder({ path: folder });
  const file = `${folder}/f.bin`;
  const committed = await owner.meta.commitFile({ path: file, blocks, size: BigInt(data.length) });
  // Things each role may change or remove, so that no case takes another's ground.
  for (const r of ROLES) {
    for (const what of ["del", "bdel", "perm", "mv", "restore"]) await owner.meta.commitFile({ path: `${folder}/${what}-${r}.bin`, blocks, size: BigInt(data.length) });
    await owner.meta.delete({ path: `${folder}/perm-${r}.bin` });
    await owner.meta.delete({ path: `${folder}/restore-${r}.bin` });
  }
  const { namespaceId } = await owner.meta.shareFolder({ path: folder, username: accounts.editor.username, role: Role.EDITOR });
  await owner.meta.shareFolder({ path: folder, username: accounts.viewer.username, role: Role.VIEWER });
  await owner.meta.shareFolder({ path: folder, username: accounts.removed.username, role: Role.EDITOR });
  await owner.meta.unshare({ path: folder, username: accounts.removed.username });
  await owner.meta.createFolder({ path: leave });
  for (const r of ["editor", "viewer"] as const) await owner.meta.shareFolder({ path: leave, username: accounts[r].username, role: r === "editor" ? Role.EDITOR : Role.VIEWER });
  const links = {} as Record<Who, bigint>;
  for (const r of ROLES) links[r] = (await owner.meta.createShareLink({ path: file })).linkId;
  const url = (await owner.meta.createShareLink({ path: file })).url;
  const linkToken = url.slice(url.lastIndexOf("/s/") + 3);
  const clients = {} as Record<Who, Clients>;
  for (const r of ROLES) clients[r] = clientsOf(port, r === "linkHolder" ? linkToken : tokens[r]);
  const b = committed.file!.blocks[0];
  return { port, folder, leave, namespaceId, file, revision: committed.file!.revision, block: { hash: b.hash, grant: b.grant }, links, linkToken, clients };
}

interface Case {
  wants: Wants;
  call: (c: Clients, who: Who, f: Fixture) => Promise<unknown>;
}

/** A server stream's first message (or its error); the stream is then cancelled (over HTTP/1.1 it would stay open). */
async function first(open: (signal: AbortSignal) => AsyncIterable<unknown>): Promise<void> {
  const ac = new AbortController();
  try {
    for await (const _ of open(ac.signal)) return;
  } finally {
    ac.abort();
  }
}

function cases(): Map<DescService, Record<string, Case>> {
  const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
  const own = randomBytes(64);
  /** The grant this role reads the file with: its own metadata's where it may read, else the owner's. */
  const grantOf = async (c: Clients, who: Who, f: Fixture) => {
    if (!["owner", "editor", "viewer"].includes(who)) return f.block.grant;
    return (await c.meta.getFileMetadata({ path: f.file })).file!.blocks[0].grant;
  };
  const at = (f: Fixture, name: string, who: Who) => `${f.folder}/${name}-${who}.bin`;
  return new Map<DescService, Record<string, Case>>([
    [MetaService, {
      CommitFile: { wants: WRITE, call: (c, who, f) => c.meta.commitFile({ path: f.file, blocks: [{ hash: f.block.hash, size: 5000, grant: f.block.grant }], size: 5000n, parentRevision: f.revision, requestId: `${who}-${f.port}` }).then((r) => {
        if (r.missingBlocks.length > 0) throw new ConnectError("missing blocks", Code.NotFound);
      }) },
      // Each change of a batch answers as the single call would (its status, or missing blocks): a
      // commit and a delete, which must agree (a role that may do one may do the other; NOT_FOUND
      // and PERMISSION_DENIED both refuse).
      CommitBatch: { wants: WRITE, call: (c, who, f) => c.meta.commitBatch({ changes: [
        { change: { case: "commit", value: {
          path: f.file, blocks: [{ hash: f.block.hash, size: 5000, grant: f.block.grant }], size: 5000n, parentRevision: f.revision, requestId: `batch-${who}-${f.port}`,
        } } },
        { change: { case: "delete", value: { path: at(f, "bdel", who) } } },
      ] }).then(({ results: [commit, del] }) => {
        const missing = commit.code === 0 && (commit.result.case !== "commit" || commit.result.value.missingBlocks.length > 0);
        const refusal = (code: number) => (code === Code.NotFound ? Code.PermissionDenied : code);
        const commitCode = missing ? Code.NotFound : commit.code;
        if (refusal(commitCode) !== refusal(del.code)) throw new ConnectError(`the batch's commit answered ${commitCode} and its delete ${del.code}`, Code.Internal);
        if (missing) throw new ConnectError("missing blocks", Code.NotFound);
        if (commit.code !== 0) throw new ConnectError(commit.message, commit.code as Code);
      }) },
      GetFileMetadata: { wants: READ, call: (c, _w, f) => c.meta.getFileMetadata({ path: f.file, revision: f.revision }) },
      ListFolder: { wants: READ, call: (c, _w, f) => c.meta.listFolder({ path: f.folder }) },
      // Paths are the caller's own tree: a removed member or a stranger naming the owner's folder makes
      // one of their own (run last, so that no other case meets it; the owner's folder is checked after).
      CreateFolder: { wants: { ...WRITE, removed: "ok", stranger: "ok" }, call: (c, who, f) => c.meta.createFolder({ path: `${f.folder}/made-by-${who}` }) },
      Delete: { wants: WRITE, call: (c, who, f) => c.meta.delete({ path: at(f, "del", who) }) },
      Undelete: { wants: WRITE, call: (c, who, f) => c.meta.undelete({ path: at(f, "restore", who) }) },
      PermanentlyDelete: { wants: WRITE, call: (c, who, f) => c.meta.permanentlyDelete({ path: at(f, "perm", who) }) },
      Move: { wants: WRITE, call: (c, who, f) => c.meta.move({ fromPath: at(f, "mv", who), toPath: at(f, "moved", who) }) },
      ListRevisions: { wants: READ, call: (c, _w, f) => c.meta.listRevisions({ path: f.file }) },
      Restore: { wants: WRITE, call: (c, _w, f) => c.meta.restore({ path: f.file, revision: f.revision }) },
      ListNamespaces: { wants: OWN, call: (c) => c.meta.listNamespaces({}) },
      ListDelta: { wants: READ, call: (c, _w, f) => c.meta.listDelta({ namespaceId: f.namespaceId, cursor: 0n }) },
      WaitForChange: { wants: READ, call: (c, _w, f) => c.meta.waitForChange({ cursors: [{ namespaceId: f.namespaceId, cursor: 0n }], timeoutSeconds: 1 }) },
      ShareFolder: { wants: OWNER_ONLY, call: (c, _w, f) => c.meta.shareFolder({ path: f.folder, username: accounts.extra.username, role: Role.VIEWER }).then(() =>
        clientsOf("grpc", tokens.owner).meta.unshare({ path: f.folder, username: accounts.extra.username })) },
      Unshare: { wants: OWNER_ONLY, call: async (c, _w, f) => {
        // Someone to remove: "extra", shared with just before (by the owner).
        await clientsOf("grpc", tokens.owner).meta.shareFolder({ path: f.folder, username: accounts.extra.username, role: Role.VIEWER });
        try {
          await c.meta.unshare({ path: f.folder, username: accounts.extra.username });
        } finally {
          await clientsOf("grpc", tokens.owner).meta.unshare({ path: f.folder, username: accounts.extra.username }).catch(() => undefined);
        }
      } },
      LeaveSharedFolder: {
        wants: { owner: "precondition", editor: "ok", viewer: "ok", removed: "denied", stranger: "denied", ...signedOutToo },
        call: (c, _w, f) => c.meta.leaveSharedFolder({ path: f.leave }),
      },
      ListMembers: { wants: READ, call: (c, _w, f) => c.meta.listMembers({ path: f.folder }) },
      CreateShareLink: { wants: WRITE, call: (c, _w, f) => c.meta.createShareLink({ path: f.file }) },
      RevokeShareLink: {
        wants: { owner: "ok", editor: "ok", viewer: "denied", removed: "denied", stranger: "denied", ...signedOutToo },
        call: (c, who, f) => c.meta.revokeShareLink({ linkId: f.links[who] }),
      },
      ListShareLinks: { wants: WRITE, call: (c, _w, f) => c.meta.listShareLinks({ path: f.file }) },
      SetLinkPolicy: { wants: OWNER_ONLY, call: (c, _w, f) => c.meta.setLinkPolicy({ path: f.folder, viewersMayCreateLinks: false }) },
      GetSpaceUsage: { wants: OWN, call: (c) => c.meta.getSpaceUsage({}) },
    }],
    [AuthService, {
      // Public: how a device gets a token (each answers on its merits, whoever calls).
      CreateAccount: { wants: PUBLIC, call: (c) => c.auth.createAccount({ username: `role-new-${randomBytes(4).toString("hex")}`, password: "a long password" }) },
      Login: { wants: PUBLIC, call: (c) => c.auth.login({ username: accounts.stranger.username, password: accounts.stranger.password, deviceName: "matrix-login" }) },
      Refresh: { wants: PUBLIC, call: async (c) => {
        const { tokens: t } = await c.auth.login({ username: accounts.stranger.username, password: accounts.stranger.password, deviceName: "matrix-refresh" });
        await c.auth.refresh({ refreshToken: t!.refreshToken });
      } },
      ListDevices: { wants: OWN, call: (c) => c.auth.listDevices({}) },
      RevokeDevice: { wants: { ...OWN, owner: "denied", editor: "denied", viewer: "denied", removed: "denied", stranger: "denied" }, call: (c) => c.auth.revokeDevice({ deviceId: 4_611_686_018_427_387_000n }) },
    }],
    [BlockService, {
      PutBlock: { wants: OWN, call: (c) => c.blocks.putBlock({ hash: sha(own), data: own }) },
      GetBlock: { wants: READ, call: async (c, who, f) => c.blocks.getBlock({ hash: f.block.hash, grant: await grantOf(c, who, f) }) },
      HasBlocks: { wants: READ, call: async (c, who, f) => {
        const { present } = await c.blocks.hasBlocks({ hashes: [f.block.hash], grants: [await grantOf(c, who, f)] });
        if (!present[0]) throw new ConnectError("not present to this caller", Code.NotFound);
      } },
      ReserveBlocks: { wants: SERVICE_ONLY, call: (c, _w, f) => c.blocks.reserveBlocks({ hashes: [f.block.hash] }) },
      AdjustReferences: { wants: SERVICE_ONLY, call: (c, _w, f) => c.blocks.adjustReferences({ source: "matrix", changes: [{ sequence: 1n, hash: f.block.hash, delta: -1 }] }) },
    }],
    [NotifyService, {
      Subscribe: { wants: READ, call: (c, _w, f) => first((signal) => c.notify.subscribe({ namespaceIds: [f.namespaceId] }, { signal })) },
      Poll: { wants: READ, call: (c, _w, f) => c.notify.poll({ cursors: [{ namespaceId: f.namespaceId, cursor: 0n }] }) },
    }],
    [MetaAdminService, Object.fromEntries(MetaAdminService.methods.map((m) => [m.name, { wants: SERVICE_ONLY, call: (c: Clients) => (c.metaAdmin as never as Record<string, (r: object) => Promise<unknown>>)[m.localName]({}) }]))],
    [BlockAdminService, Object.fromEntries(BlockAdminService.methods.map((m) => [m.name, { wants: SERVICE_ONLY, call: (c: Clients) => (c.blockAdmin as never as Record<string, (r: object) => Promise<unknown>>)[m.localName]({}) }]))],
  ]);
}

/** The case that changes removed members' and strangers' own trees at the owner's path. */
const LAST = "CreateFolder";

function judged(want: Want, code: Code | "OK"): boolean {
  switch (want) {
    case "ok": return code === "OK";
    case "denied": return code === Code.PermissionDenied || code === Code.NotFound;
    case "forbidden": return code === Code.PermissionDenied;
    case "unauth": return code === Code.Unauthenticated;
    case "precondition": return code === Code.FailedPrecondition;
  }
}

describe("role matrix: every RPC, by every kind of caller of a shared folder, on the gRPC and the web ports", () => {
  for (const port of ["grpc", "web"] as const) {
    it(`${port}: each role gets what it may and is refused the rest; covers every method`, async () => {
      const f = await fixture(port);
      const failures: string[] = [];
      for (const [svc, rows] of cases()) {
        for (const method of [...svc.methods].sort((a, b) => Number(a.name === LAST) - Number(b.name === LAST))) {
          const row = rows[method.name];
          if (!row) {
            failures.push(`${svc.name}/${method.name}: not in the matrix`);
            continue;
          }
          for (const who of ROLES) {
            let code: Code | "OK" = "OK";
            let message = "";
            try {
              await row.call(f.clients[who], who, f);
            } catch (err) {
              const e = ConnectError.from(err);
              [code, message] = [e.code, e.rawMessage];
            }
            if (!judged(row.wants[who], code)) {
              failures.push(`${port} ${svc.name}/${method.name} as ${who}: wanted ${row.wants[who]}, got ${code === "OK" ? "OK" : Code[code]} ${message}`);
            }
          }
        }
      }
      expect(failures).toEqual([]);
      // What the refused callers tried left the owner's folder as it was.
      const owner = clientsOf("grpc", tokens.owner).meta;
      const names = (await owner.listFolder({ path: f.folder })).entries.map((e) => e.name);
      for (const who of ["viewer", "removed", "stranger", "linkHolder", "signedOut"]) {
        expect(names.filter((n) => n.includes(`-${who}`) && !/^(b?del|perm|mv|restore)-/.test(n))).toEqual([]);
        expect(names).toContain(`del-${who}.bin`);
        expect(names).toContain(`bdel-${who}.bin`);
        expect(names).toContain(`mv-${who}.bin`);
      }
      expect((await owner.listMembers({ path: f.folder })).members.map((m) => m.username).sort()).toEqual([accounts.owner.username, accounts.editor.username, accounts.viewer.username].sort());
    });
  }
});
