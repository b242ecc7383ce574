import { clientAddressKey, type ServiceRouter } from "@satchel/proto";
import { createHash, randomBytes } from "node:crypto";
import type { HandlerContext } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AuthService, type Tokens } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { hashPassword, verifyPassword } from "../auth/passwords.js";
import type { MetaserverContext } from "../context.js";
import { invalidArgument, notFound, unauthenticated } from "../errors.js";
import type { DeviceRecord, UserRecord } from "../store/namespaces.js";
import { callerOf, guarded } from "./caller.js";

const USERNAME = /^[A-Za-z0-9._-]{3,64}$/;
const MIN_PASSWORD = 8;
const MAX_PASSWORD = 1024;
const MAX_DEVICE_NAME = 128;

/** AuthService methods anyone may call: they are how a device gets a token in the first place. */
export const PUBLIC_AUTH_METHODS = ["CreateAccount", "Login", "Refresh"].map((m) => `${AuthService.typeName}/${m}`);

const refreshHash = (token: string) => createHash("sha256").update(token).digest();
/** The client's address, for limits per address ("unknown" where the runtime gave none). */
const addressOf = (hctx: HandlerContext) => hctx.values.get(clientAddressKey) || "unknown";

/**
 * Sign-in that a flood cannot exhaust: Login and Refresh are limited per client address ("signin"),
 * CreateAccount per address ("signup"), and wrong passwords per username ("failedSignins": checked
 * before the hash, charged when it fails, so guessing one account from many addresses stops too);
 * every password hash waits its turn in ctx.passwords, address by address. An unknown username is checked against a
 * stand-in hash, so it takes as long as a wrong password and the answer is the same.
 */
export function authRoutes(ctx: MetaserverContext) {
  let standIn: Promise<string> | undefined;
  const verify = (address: string, password: string, user: UserRecord | undefined) => ctx.passwords.run(address, async () => {
    const ok = await verifyPassword(password, user?.passwordHash ?? (await (standIn ??= hashPassword(randomBytes(16).toString("hex")))));
    return ok && user !== undefined;
  });

  const issue = async (user: Pick<UserRecord, "userId" | "username">, device: DeviceRecord): Promise<Tokens> => {
    const access = await ctx.accessTokens.sign(
      { userId: user.userId, username: user.username, deviceId: device.deviceId, deviceName: device.name }, ctx.config.accessTokenTtlSeconds,
    );
    const refreshToken = randomBytes(32).toString("base64url");
    const refreshExpiresAt = new Date(Date.now() + ctx.config.refreshTokenTtlSeconds * 1000);
    await ctx.namespaces.setRefresh(device.deviceId, refreshHash(refreshToken), refreshExpiresAt);
    return {
      $typeName: "satchel.meta.v1.Tokens",
      accessToken: access.token,
      accessExpireTime: timestampFromDate(access.expiresAt),
      refreshToken,
      refreshExpireTime: timestampFromDate(refreshExpiresAt),
    };
  };

  return (router: ServiceRouter) =>
    router.service(AuthService, {
      createAccount: guarded("CreateAccount", async (req, hctx) => {
        await ctx.limits.check(addressOf(hctx), "signup", 1, "from your address");
        if (!USERNAME.test(req.username)) throw invalidArgument("username must be 3 to 64 characters: letters, digits, \".\", \"_\" or \"-\"");
        if (req.password.length < MIN_PASSWORD) throw invalidArgument(`password must be at least ${MIN_PASSWORD} characters`);
        if (req.password.length > MAX_PASSWORD) throw invalidArgument(`password must be at most ${MAX_PASSWORD} characters`);
        const user = await ctx.namespaces.createUser(req.username, await ctx.passwords.run(addressOf(hctx), () => hashPassword(req.password)));
        return { userId: user.userId };
      }),
      login: guarded("Login", async (req, hctx) => {
        const deviceName = req.deviceName.trim();
        if (!deviceName || deviceName.length > MAX_DEVICE_NAME || /[\u0000-\u001f]/.test(deviceName)) {
          throw invalidArgument(`device_name must be 1 to ${MAX_DEVICE_NAME} printable characters`);
        }
        if (req.password.length > MAX_PASSWORD) throw invalidArgument(`password must be at most ${MAX_PASSWORD} characters`);
        await ctx.limits.check(addressOf(hctx), "signin", 1, "from your address");
        const account = req.username.slice(0, 128);
        await ctx.limits.check(account, "failedSignins", 0, "for this account");
        const user = await ctx.namespaces.findUser({ username: req.username });
        // One answer, in one time, for "no such user" and "wrong password": do not reveal which usernames exist.
        const ok = await verify(addressOf(hctx), req.password, user);
        if (!ok || !user) {
          await ctx.limits.charge(account, "failedSignins", 1);
          throw unauthenticated("wrong username or password");
        }
        const device = await ctx.namespaces.upsertDevice(user.userId, deviceName);
        return { userId: user.userId, device: toDevice(device), tokens: await issue(user, device) };
      }),
      refresh: guarded("Refresh", async (req, hctx) => {
        await ctx.limits.check(addressOf(hctx), "signin", 1, "from your address");
        const next = randomBytes(32).toString("base64url");
        const expiresAt = new Date(Date.now() + ctx.config.refreshTokenTtlSeconds * 1000);
        const device = await ctx.namespaces.rotateRefresh(refreshHash(req.refreshToken), refreshHash(next), expiresAt);
        if (!device) throw unauthenticated("refresh token is unknown, used already, revoked or expired: sign in again");
        const user = await ctx.namespaces.findUser({ userId: device.userId });
        if (!user) throw unauthenticated("the account no longer exists");
        const access = await ctx.accessTokens.sign(
          { userId: user.userId, username: user.username, deviceId: device.deviceId, deviceName: device.name }, ctx.config.accessTokenTtlSeconds,
        );
        return {
          tokens: {
            accessToken: access.token, accessExpireTime: timestampFromDate(access.expiresAt),
            refreshToken: next, refreshExpireTime: timestampFromDate(expiresAt),
          },
        };
      }),
      listDevices: guarded("ListDevices", async (_req, hctx) => {
        const caller = callerOf(hctx);
        return { devices: (await ctx.namespaces.listDevices(caller.userId)).map(toDevice) };
      }),
      revokeDevice: guarded("RevokeDevice", async (req, hctx) => {
        const caller = callerOf(hctx);
        if (!(await ctx.namespaces.revokeDevice(caller.userId, req.deviceId))) throw notFound(`you have no device ${req.deviceId}`);
        return {};
      }),
    });
}

function toDevice(d: DeviceRecord) {
  return { deviceId: d.deviceId, name: d.name, createTime: timestampFromDate(d.createdAt), lastSeenTime: timestampFromDate(d.lastSeenAt) };
}
