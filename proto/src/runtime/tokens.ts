import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { errors, jwtVerify, SignJWT } from "jose";
import type { Principal, TokenVerifier } from "./interceptors.js";

/** One HMAC key for access tokens. The first configured key signs; every configured key verifies. */
export interface SigningKey {
  kid: string;
  /** At least 32 bytes, base64url. */
  secret: string;
}

export interface AccessClaims {
  userId: bigint;
  username: string;
  deviceId: bigint;
  deviceName: string;
}

const ISSUER = "satchel";
const AUDIENCE = "satchel";
const ALGORITHM = "HS256";

/**
 * Signs and verifies short-lived access tokens (JWT, HS256). Keys rotate by configuration: put a
 * new key first (it signs from then on) and keep the old one after it until the longest-lived
 * token it signed has expired.
 */
/** Verified tokens remembered per process (verification is the costliest part of a small call). */
const VERIFIED_CACHE = 10_000;

export class AccessTokens {
  private readonly keys: Map<string, Uint8Array>;
  private readonly verified = new Map<string, { principal: Principal; expiresAt: number }>();
  private readonly signingKid: string;

  constructor(keys: SigningKey[]) {
    if (keys.length === 0) throw new Error("at least one token signing key is required (SATCHEL_TOKEN_KEYS)");
    this.keys = new Map();
    for (const k of keys) {
      const secret = Buffer.from(k.secret, "base64url");
      if (secret.length < 32) throw new Error(`token key "${k.kid}" is shorter than 32 bytes`);
      this.keys.set(k.kid, secret);
    }
    this.signingKid = keys[0].kid;
  }

  async sign(claims: AccessClaims, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
    const now = Math.floor(Date.now() / 1000);
    const exp = now + ttlSeconds;
    const token = await new SignJWT({ name: claims.username, dev: claims.deviceId.toString(), dvn: claims.deviceName })
      .setProtectedHeader({ alg: ALGORITHM, kid: this.signingKid })
      .setSubject(claims.userId.toString())
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .sign(this.keys.get(this.signingKid)!);
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** The caller a token names; UNAUTHENTICATED with the reason when it is expired, forged or unknown. */
  async verify(token: string): Promise<Principal> {
    const hit = this.verified.get(token);
    if (hit && hit.expiresAt > Date.now()) return hit.principal;
    const { expiresAt, ...principal } = await this.verifyUncached(token);
    if (this.verified.size >= VERIFIED_CACHE) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { principal, expiresAt });
    return principal;
  }

  private async verifyUncached(token: string): Promise<Principal & { expiresAt: number }> {
    try {
      const { payload } = await jwtVerify(token, (header) => {
        const key = header.kid === undefined ? undefined : this.keys.get(header.kid);
        if (!key) throw new ConnectError(`access token signed with an unknown key "${header.kid ?? ""}": sign in again`, Code.Unauthenticated);
        return key;
      }, { issuer: ISSUER, audience: AUDIENCE, algorithms: [ALGORITHM] });
      if (typeof payload.sub !== "string" || !/^\d+$/.test(payload.sub)) throw new ConnectError("access token has no user", Code.Unauthenticated);
      return {
        kind: "user",
        userId: payload.sub,
        username: String(payload.name ?? ""),
        deviceId: String(payload.dev ?? "0"),
        deviceName: String(payload.dvn ?? ""),
        expiresAt: (payload.exp ?? 0) * 1000,
      };
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      if (err instanceof errors.JWTExpired) throw new ConnectError("access token expired: refresh it (AuthService/Refresh) or sign in again", Code.Unauthenticated);
      if (err instanceof errors.JWSSignatureVerificationFailed) throw new ConnectError("access token signature is invalid", Code.Unauthenticated);
      throw new ConnectError(`access token rejected: ${(err as Error).message}`, Code.Unauthenticated);
    }
  }
}

/**
 * The verifier every service uses: the cluster's service token (services and operators) or a
 * user's signed access token.
 */
export function tokenVerifier(serviceToken: string, tokens: AccessTokens): TokenVerifier {
  const serviceDigest = createHash("sha256").update(serviceToken).digest();
  return async (token) => {
    if (timingSafeEqual(createHash("sha256").update(token).digest(), serviceDigest)) return { kind: "service", userId: "service" };
    if (token.split(".").length !== 3) throw new ConnectError("token is neither an access token nor the service token", Code.Unauthenticated);
    return tokens.verify(token);
  };
}
