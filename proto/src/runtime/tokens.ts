import { createHash, createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, timingSafeEqual, type KeyObject } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { errors, jwtVerify, SignJWT } from "jose";
import type { Principal, TokenVerifier } from "./interceptors.js";
import { identify, type ServiceCredentials } from "./service-identity.js";

/** A secret key of an HMAC (block grants, share links): the first configured signs, every one verifies. */
export interface SigningKey {
  kid: string;
  /** At least 32 bytes, base64url. */
  secret: string;
}

/**
 * An access-token key: Ed25519, in the JWK fields of RFC 8037 (base64url). `x` is the public key,
 * which every service holds to verify; `d` the private key, which only the metaserver holds (only
 * it signs users' tokens). The first key with `d` signs; every key verifies (rotation: put a new key
 * first, keep the old one until the tokens it signed have expired).
 */
export interface TokenKey {
  kid: string;
  x: string;
  d?: string;
}

/** A new Ed25519 token key (with its private half). */
export function generateTokenKey(kid: string): Required<TokenKey> {
  const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
  return { kid, x: jwk.x!, d: jwk.d! };
}

/** The keys as a service that only verifies holds them. */
export function publicTokenKeys(keys: TokenKey[]): TokenKey[] {
  return keys.map(({ kid, x }) => ({ kid, x }));
}

/**
 * The share links' HMAC keys, derived from the token keys' private halves: only the metaserver
 * (which serves the links) can make or check them, and they rotate with the token keys.
 */
export function linkKeysOf(keys: TokenKey[]): SigningKey[] {
  return keys.filter((k) => k.d).map((k) => ({ kid: k.kid, secret: createHmac("sha256", Buffer.from(k.d!, "base64url")).update("satchel share links").digest("base64url") }));
}

export interface AccessClaims {
  userId: bigint;
  username: string;
  deviceId: bigint;
  deviceName: string;
}

const ISSUER = "satchel";
const AUDIENCE = "satchel";
const ALGORITHM = "EdDSA";

/**
 * Signs (the metaserver) and verifies (every service) short-lived access tokens: JWT, EdDSA with
 * Ed25519, `kid` in the header. A process given public keys only can verify but never mint one.
 */
/** Verified tokens remembered per process (verification is the costliest part of a small call). */
const VERIFIED_CACHE = 10_000;

export class AccessTokens {
  private readonly keys = new Map<string, KeyObject>();
  private readonly verified = new Map<string, { principal: Principal; expiresAt: number }>();
  private readonly signing?: { kid: string; key: KeyObject };

  constructor(keys: TokenKey[]) {
    if (keys.length === 0) throw new Error("at least one access-token key is required (SATCHEL_TOKEN_KEYS)");
    for (const k of keys) {
      if (!k.kid || !k.x) throw new Error("an access-token key needs a kid and x (an Ed25519 public key, base64url)");
      const jwk = { kty: "OKP", crv: "Ed25519", x: k.x };
      try {
        this.keys.set(k.kid, createPublicKey({ key: jwk, format: "jwk" }));
        if (k.d && !this.signing) this.signing = { kid: k.kid, key: createPrivateKey({ key: { ...jwk, d: k.d }, format: "jwk" }) };
      } catch (err) {
        throw new Error(`access-token key "${k.kid}" is not an Ed25519 key: ${(err as Error).message}`);
      }
    }
  }

  /** Whether this process may sign tokens (it holds a private key). */
  get canSign(): boolean {
    return this.signing !== undefined;
  }

  async sign(claims: AccessClaims, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
    if (!this.signing) throw new Error("this process holds public token keys only: only the metaserver signs access tokens");
    const now = Math.floor(Date.now() / 1000);
    const exp = now + ttlSeconds;
    const token = await new SignJWT({ name: claims.username, dev: claims.deviceId.toString(), dvn: claims.deviceName })
      .setProtectedHeader({ alg: ALGORITHM, kid: this.signing.kid })
      .setSubject(claims.userId.toString())
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .sign(this.signing.key);
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
 * The verifier every service uses: a service's or the operator's credential (see
 * service-identity.ts) or a user's signed access token.
 */
export function tokenVerifier(credentials: ServiceCredentials, tokens: AccessTokens): TokenVerifier {
  return async (token) => {
    const service = identify(token, credentials);
    if (service) return { kind: "service", userId: "service", service };
    if (token.split(".").length !== 3) throw new ConnectError("token is neither an access token nor a service credential", Code.Unauthenticated);
    return tokens.verify(token);
  };
}
