import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { AccessTokens, createSatchelTransport, generateTokenKey } from "@satchel/proto";
import { AuthService, type LoginResponse } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { MetaAdminService, MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { createAccount, failure, type TestAccount } from "@satchel/ops";

const { endpoints, stateDir } = inject("cluster");

const auth = createClient(AuthService, createSatchelTransport({ baseUrl: endpoints.metaserver }));
const metaAs = (token?: string) => createClient(MetaService, createSatchelTransport({ baseUrl: endpoints.metaserver, token }));
const authAs = (token?: string) => createClient(AuthService, createSatchelTransport({ baseUrl: endpoints.metaserver, token }));


/** Every unary method of a service, called with an empty request through a client of it. */
function everyMethod<S extends DescService>(service: S, client: Client<S>): { name: string; call: () => Promise<unknown> }[] {
  return service.methods.map((m) => {
    expect(m.methodKind).toBe("unary");
    const fn = (client as unknown as Record<string, (req: object, opts: object) => Promise<unknown>>)[m.localName];
    return { name: m.name, call: () => fn({}, { timeoutMs: 10_000 }) };
  });
}

async function login(account: { username: string; password: string }, deviceName = "laptop"): Promise<LoginResponse> {
  return auth.login({ username: account.username, password: account.password, deviceName });
}

describe("accounts", () => {
  it("a username outside 3 to 64 letters, digits, '.', '_' or '-' is refused with INVALID_ARGUMENT", async () => {
    const password = "long-enough-password";
    for (const username of ["", "ab", "a".repeat(65), "has space", "slash/name", "at@sign", "ünïcode", "tab\tname", "../etc"]) {
      const err = await failure(auth.createAccount({ username, password }));
      expect(err.code, `username ${JSON.stringify(username)}`).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/username/);
    }
    // The edges of the rule are accepted (each run has a fresh cluster, so three characters are free).
    const edge = randomBytes(4).toString("hex");
    await expect(auth.createAccount({ username: `-${edge.slice(0, 1)}.`, password })).resolves.toBeDefined();
    await expect(auth.createAccount({ username: `${edge}_-.${"x".repeat(64 - edge.length - 3)}`, password })).resolves.toBeDefined();
  });

  it("a password shorter than 8 characters is refused with INVALID_ARGUMENT", async () => {
    const username = `shortpw-${randomBytes(5).toString("hex")}`;
    for (const password of ["", "1234567", "seven77"]) {
      const err = await failure(auth.createAccount({ username, password }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/password/);
    }
    // Nothing was created by the refusals: the name is still free, and 8 characters are enough.
    await expect(auth.createAccount({ username, password: "12345678" })).resolves.toBeDefined();
  });

  it("a taken username is refused with ALREADY_EXISTS and the first account keeps its password", async () => {
    const first = await createAccount(endpoints, "dup");
    const err = await failure(auth.createAccount({ username: first.username, password: "another-password" }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.rawMessage).toContain(first.username);
    await expect(login(first)).resolves.toBeDefined();
    expect((await failure(login({ username: first.username, password: "another-password" }))).code).toBe(Code.Unauthenticated);
  });

  it("login with a wrong password or an unknown user is UNAUTHENTICATED, with one answer for both", async () => {
    const account = await createAccount(endpoints, "login");
    const wrong = await failure(login({ username: account.username, password: `${account.password}x` }));
    const unknown = await failure(login({ username: `nobody-${randomBytes(5).toString("hex")}`, password: account.password }));
    expect(wrong.code).toBe(Code.Unauthenticated);
    expect(unknown.code).toBe(Code.Unauthenticated);
    expect(wrong.rawMessage).not.toBe("");
    // The answer must not tell which usernames exist.
    expect(unknown.rawMessage).toBe(wrong.rawMessage);
  });

  it("login refuses an empty, over-long or control-character device name with INVALID_ARGUMENT", async () => {
    const account = await createAccount(endpoints, "devname");
    for (const deviceName of ["", "   ", "x".repeat(129), "bad\nname", "nul\u0000"]) {
      const err = await failure(login(account, deviceName));
      expect(err.code, JSON.stringify(deviceName)).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/device_name/);
    }
  });

  it("login registers the named device (once per name) and ListDevices shows it", async () => {
    const account = await createAccount(endpoints, "devices");
    const laptop = await login(account, "laptop");
    expect(laptop.userId).toBe(account.userId);
    expect(laptop.device?.name).toBe("laptop");
    const again = await login(account, "laptop");
    expect(again.device?.deviceId).toBe(laptop.device?.deviceId);
    const phone = await login(account, "phone");
    expect(phone.device?.deviceId).not.toBe(laptop.device?.deviceId);
    const { devices } = await authAs(phone.tokens!.accessToken).listDevices({});
    expect(devices.map((d) => [d.deviceId, d.name]).sort()).toEqual(
      [[laptop.device!.deviceId, "laptop"], [phone.device!.deviceId, "phone"]].sort(),
    );
    // Another user sees only their own devices.
    const other = await createAccount(endpoints, "devices-other");
    const otherDevices = await authAs((await login(other, "desktop")).tokens!.accessToken).listDevices({});
    expect(otherDevices.devices.map((d) => d.name)).toEqual(["desktop"]);
  });

  it("RevokeDevice makes that device's refresh token fail and leaves the other devices signed in", async () => {
    const account = await createAccount(endpoints, "revoke");
    const laptop = await login(account, "laptop");
    const phone = await login(account, "phone");
    await authAs(laptop.tokens!.accessToken).revokeDevice({ deviceId: phone.device!.deviceId });
    const err = await failure(auth.refresh({ refreshToken: phone.tokens!.refreshToken }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toMatch(/sign in again/);
    const { devices } = await authAs(laptop.tokens!.accessToken).listDevices({});
    expect(devices.map((d) => d.name)).toEqual(["laptop"]);
    await expect(auth.refresh({ refreshToken: laptop.tokens!.refreshToken })).resolves.toBeDefined();
  });

  it("a user cannot revoke another user's device (NOT_FOUND) and that device stays signed in", async () => {
    const a = await createAccount(endpoints, "revoke-a");
    const b = await createAccount(endpoints, "revoke-b");
    const aLogin = await login(a, "laptop");
    const bLogin = await login(b, "laptop");
    const err = await failure(authAs(aLogin.tokens!.accessToken).revokeDevice({ deviceId: bLogin.device!.deviceId }));
    expect(err.code).toBe(Code.NotFound);
    await expect(auth.refresh({ refreshToken: bLogin.tokens!.refreshToken })).resolves.toBeDefined();
  });
});

describe("refresh tokens", () => {
  it("rotate: the new refresh token works once, the old one is UNAUTHENTICATED, the new access token works", async () => {
    const account = await createAccount(endpoints, "refresh");
    const first = (await login(account)).tokens!;
    const second = (await auth.refresh({ refreshToken: first.refreshToken })).tokens!;
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.accessToken).not.toBe("");

    const replay = await failure(auth.refresh({ refreshToken: first.refreshToken }));
    expect(replay.code).toBe(Code.Unauthenticated);
    expect(replay.rawMessage).not.toBe("");

    const usage = await metaAs(second.accessToken).getSpaceUsage({});
    expect(usage.usedBytes).toBe(0n);
    expect((await authAs(second.accessToken).listDevices({})).devices.map((d) => d.name)).toEqual(["laptop"]);

    const third = (await auth.refresh({ refreshToken: second.refreshToken })).tokens!;
    expect((await failure(auth.refresh({ refreshToken: second.refreshToken }))).code).toBe(Code.Unauthenticated);
    await expect(metaAs(third.accessToken).listFolder({ path: "/" })).resolves.toBeDefined();
  });

  it("a refresh token raced by several callers at once works for exactly one of them", async () => {
    const account = await createAccount(endpoints, "refresh-race");
    const { refreshToken } = (await login(account)).tokens!;
    const outcomes = await Promise.allSettled(Array.from({ length: 6 }, () => auth.refresh({ refreshToken })));
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    for (const o of outcomes) if (o.status === "rejected") expect(ConnectError.from(o.reason).code).toBe(Code.Unauthenticated);
    // The winner's new refresh token is the one that works now.
    const winner = outcomes.find((o) => o.status === "fulfilled") as PromiseFulfilledResult<{ tokens?: { refreshToken: string } }>;
    await expect(auth.refresh({ refreshToken: winner.value.tokens!.refreshToken })).resolves.toBeDefined();
  });

  it("an unknown refresh token is UNAUTHENTICATED", async () => {
    for (const refreshToken of ["", "garbage", randomBytes(32).toString("base64url")]) {
      expect((await failure(auth.refresh({ refreshToken }))).code).toBe(Code.Unauthenticated);
    }
  });
});

describe("access tokens on every RPC", () => {
  let account: TestAccount;
  let signedIn: LoginResponse;
  let claims: { userId: bigint; username: string; deviceId: bigint; deviceName: string };

  beforeAll(async () => {
    account = await createAccount(endpoints, "tokens");
    signedIn = await login(account, "laptop");
    claims = { userId: account.userId, username: account.username, deviceId: signedIn.device!.deviceId, deviceName: "laptop" };
  });


  const badTokens: { what: string; token: () => Promise<string | undefined>; message: RegExp }[] = [
    { what: "a missing token", token: async () => undefined, message: /missing credentials/ },
    { what: "a garbage token", token: async () => "garbage", message: /token/ },
    { what: "a garbage three-part token", token: async () => "not.a.jwt", message: /token/ },
    {
      what: "an expired token signed with the cluster's key",
      token: async () => (await new AccessTokens(endpoints.tokenKeys).sign(claims, -60)).token,
      message: /expired/,
    },
    {
      what: "a forged token (a random key under the cluster's kid)",
      token: async () => (await new AccessTokens([generateTokenKey(endpoints.tokenKeys[0].kid)]).sign(claims, 600)).token,
      message: /signature/,
    },
    {
      what: "an HS256 token keyed with the cluster's public key (algorithm confusion)",
      token: async () => {
        const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
        const now = Math.floor(Date.now() / 1000);
        const body = `${part({ alg: "HS256", kid: endpoints.tokenKeys[0].kid })}.${part({
          sub: String(claims.userId), name: claims.username, dev: String(claims.deviceId), dvn: "laptop", iss: "satchel", aud: "satchel", iat: now, exp: now + 600,
        })}`;
        return `${body}.${createHmac("sha256", Buffer.from(endpoints.tokenKeys[0].x, "base64url")).update(body).digest("base64url")}`;
      },
      message: /token/,
    },
    {
      what: "an unsigned token (alg none)",
      token: async () => {
        const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
        const now = Math.floor(Date.now() / 1000);
        return `${part({ alg: "none", kid: endpoints.tokenKeys[0].kid })}.${part({
          sub: String(claims.userId), name: claims.username, dev: String(claims.deviceId), dvn: "laptop", iss: "satchel", aud: "satchel", iat: now, exp: now + 600,
        })}.`;
      },
      message: /token/,
    },
    {
      what: "a token whose user was changed after signing",
      token: async () => {
        const [h, p, sig] = (await new AccessTokens(endpoints.tokenKeys).sign(claims, 600)).token.split(".");
        const payload = JSON.parse(Buffer.from(p, "base64url").toString()) as Record<string, unknown>;
        const altered = Buffer.from(JSON.stringify({ ...payload, sub: String(claims.userId + 1n) })).toString("base64url");
        return `${h}.${altered}.${sig}`;
      },
      message: /signature/,
    },
    {
      what: "a token signed with an unknown kid",
      token: async () => (await new AccessTokens([generateTokenKey(`unknown-${randomBytes(3).toString("hex")}`)]).sign(claims, 600)).token,
      message: /unknown key/,
    },
  ];

  it("only the metaserver's process holds the private token keys; the blockserver and the notifyserver hold the public ones", () => {
    const keysOf = (name: string) => {
      const pid = readFileSync(join(stateDir, "run", `${name}.pid`), "utf8").trim();
      const env = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").find((v) => v.startsWith("SATCHEL_TOKEN_KEYS="));
      return JSON.parse(env!.slice("SATCHEL_TOKEN_KEYS=".length)) as { kid: string; x: string; d?: string }[];
    };
    expect(keysOf("metaserver").some((k) => k.d)).toBe(true);
    for (const name of ["blockserver", "notifyserver"]) {
      expect(keysOf(name).map((k) => k.kid)).toEqual(endpoints.tokenKeys.map((k) => k.kid));
      expect(keysOf(name).some((k) => "d" in k)).toBe(false);
    }
  });

  it("a token signed with the cluster's key for the same claims is accepted (so the refusals below are about the token)", async () => {
    const { token } = await new AccessTokens(endpoints.tokenKeys).sign(claims, 600);
    await expect(metaAs(token).getSpaceUsage({})).resolves.toBeDefined();
    await expect(authAs(token).listDevices({})).resolves.toBeDefined();
  });

  for (const bad of badTokens) {
    it(`every MetaService RPC refuses ${bad.what} with UNAUTHENTICATED and a message`, async () => {
      const meta = metaAs(await bad.token());
      for (const m of everyMethod(MetaService, meta)) {
        const err = await failure(m.call());
        expect(err.code, m.name).toBe(Code.Unauthenticated);
        expect(err.rawMessage, m.name).toMatch(bad.message);
      }
    });

    it(`the signed-in AuthService RPCs and every MetaAdminService RPC refuse ${bad.what} with UNAUTHENTICATED`, async () => {
      const token = await bad.token();
      const signedInOnly = everyMethod(AuthService, authAs(token)).filter((m) => !["CreateAccount", "Login", "Refresh"].includes(m.name));
      expect(signedInOnly.map((m) => m.name).sort()).toEqual(["ListDevices", "RevokeDevice"]);
      const admin = everyMethod(MetaAdminService, createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token })));
      for (const m of [...signedInOnly, ...admin]) {
        const err = await failure(m.call());
        expect(err.code, m.name).toBe(Code.Unauthenticated);
        expect(err.rawMessage, m.name).toMatch(bad.message);
      }
    });
  }

  it("the service token acts on nobody's files: every MetaService RPC and the device RPCs are PERMISSION_DENIED", async () => {
    for (const m of everyMethod(MetaService, metaAs(endpoints.serviceToken))) {
      const err = await failure(m.call());
      expect(err.code, m.name).toBe(Code.PermissionDenied);
      expect(err.rawMessage, m.name).toMatch(/access token/);
    }
    for (const name of ["listDevices", "revokeDevice"] as const) {
      expect((await failure(authAs(endpoints.serviceToken)[name]({}))).code, name).toBe(Code.PermissionDenied);
    }
  });

  it("a user's access token is PERMISSION_DENIED on every MetaAdminService RPC", async () => {
    const admin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: signedIn.tokens!.accessToken }));
    for (const m of everyMethod(MetaAdminService, admin)) {
      const err = await failure(m.call());
      expect(err.code, m.name).toBe(Code.PermissionDenied);
      expect(err.rawMessage, m.name).toMatch(/operator's credential/);
    }
    // SetQuota in particular changed nothing: the user's quota is still unlimited.
    const err = await failure(admin.setQuota({ username: account.username, quotaBytes: 1n }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect((await metaAs(signedIn.tokens!.accessToken).getSpaceUsage({})).quotaBytes).toBe(0n);
  });
});

describe("one user's namespaces are closed to another", () => {
  let alice: Client<typeof MetaService>;
  let bob: Client<typeof MetaService>;
  let bobRoot: bigint;
  let aliceRoot: bigint;

  beforeAll(async () => {
    const a = await createAccount(endpoints, "alice");
    const b = await createAccount(endpoints, "bob");
    alice = metaAs((await login(a)).tokens!.accessToken);
    bob = metaAs((await login(b)).tokens!.accessToken);
    await bob.createFolder({ path: "/bob-private" });
    await bob.commitFile({ path: "/bob-private/diary.txt", blocks: [], size: 0n });
    await bob.commitFile({ path: "/top-secret.txt", blocks: [], size: 0n });
    await alice.commitFile({ path: "/alice.txt", blocks: [], size: 0n });
    const bobNamespaces = (await bob.listNamespaces({})).namespaces;
    expect(bobNamespaces).toHaveLength(1);
    bobRoot = bobNamespaces[0].namespaceId;
    aliceRoot = (await alice.listNamespaces({})).namespaces[0].namespaceId;
    expect(aliceRoot).not.toBe(bobRoot);
  });

  it("ListNamespaces lists only the caller's own namespaces", async () => {
    expect((await alice.listNamespaces({})).namespaces.map((n) => n.namespaceId)).toEqual([aliceRoot]);
  });

  it("ListDelta on another user's namespace is PERMISSION_DENIED", async () => {
    for (const cursor of [0n, 1n]) {
      const err = await failure(alice.listDelta({ namespaceId: bobRoot, cursor }));
      expect(err.code).toBe(Code.PermissionDenied);
      expect(err.rawMessage).toContain(String(bobRoot));
    }
    // Alice's own journal answers.
    expect((await alice.listDelta({ namespaceId: aliceRoot, cursor: 0n })).entries.length).toBeGreaterThan(0);
  });

  it("WaitForChange on another user's namespace is PERMISSION_DENIED, alone or beside the caller's own", async () => {
    const alone = await failure(alice.waitForChange({ cursors: [{ namespaceId: bobRoot, cursor: 0n }], timeoutSeconds: 1 }));
    expect(alone.code).toBe(Code.PermissionDenied);
    const mixed = await failure(alice.waitForChange({
      cursors: [{ namespaceId: aliceRoot, cursor: 1_000_000n }, { namespaceId: bobRoot, cursor: 0n }], timeoutSeconds: 1,
    }));
    expect(mixed.code).toBe(Code.PermissionDenied);
  });

  it("the caller's ListFolder and GetFileMetadata never show another user's files", async () => {
    const paths: string[] = [];
    let pageToken = "";
    do {
      const page = await alice.listFolder({ path: "/", recursive: true, includeDeleted: true, pageToken });
      paths.push(...page.entries.map((e) => e.path));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(paths).toEqual(["/alice.txt"]);
    for (const path of ["/bob-private", "/bob-private/diary.txt", "/top-secret.txt"]) {
      expect((await failure(alice.getFileMetadata({ path }))).code, path).toBe(Code.NotFound);
    }
    expect((await failure(alice.listFolder({ path: "/bob-private" }))).code).toBe(Code.NotFound);
    // Bob still sees his own.
    expect((await bob.getFileMetadata({ path: "/top-secret.txt" })).file?.namespaceId).toBe(bobRoot);
  });
});
