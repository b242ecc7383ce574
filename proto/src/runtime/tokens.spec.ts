import { createHmac, randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { credentialDigests } from "./service-identity.js";
import { AccessTokens, generateTokenKey, linkKeysOf, publicTokenKeys, tokenVerifier, type TokenKey } from "./tokens.js";

const key = (kid: string): TokenKey => generateTokenKey(kid);
const claims = { userId: 42n, username: "ana", deviceId: 7n, deviceName: "laptop" };

async function codeOf(p: Promise<unknown> | unknown): Promise<Code | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("access tokens", () => {
  it("carry the user and device they were signed for", async () => {
    const tokens = new AccessTokens([key("k1")]);
    const { token } = await tokens.sign(claims, 60);
    expect(await tokens.verify(token)).toEqual({ kind: "user", userId: "42", username: "ana", deviceId: "7", deviceName: "laptop" });
  });

  it("keep verifying after a key rotation until they expire; tokens of a dropped key fail", async () => {
    const k1 = key("k1");
    const k2 = key("k2");
    const { token: old } = await new AccessTokens([k1]).sign(claims, 60);
    const rotated = new AccessTokens([k2, k1]);
    expect((await rotated.verify(old)).userId).toBe("42");
    const { token: fresh } = await rotated.sign(claims, 60);
    expect((await new AccessTokens([k2]).verify(fresh)).userId).toBe("42");
    expect(await codeOf(new AccessTokens([k2]).verify(old))).toBe(Code.Unauthenticated);
  });

  it("are refused when expired, forged or tampered with", async () => {
    const k1 = key("k1");
    const tokens = new AccessTokens([k1]);
    expect(await codeOf(tokens.verify((await tokens.sign(claims, -5)).token))).toBe(Code.Unauthenticated);
    const forged = await new AccessTokens([key("k1")]).sign(claims, 60);
    expect(await codeOf(tokens.verify(forged.token))).toBe(Code.Unauthenticated);
    const [h, p, s] = (await tokens.sign(claims, 60)).token.split(".");
    const other = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, "base64url").toString()), sub: "43" })).toString("base64url");
    expect(await codeOf(tokens.verify(`${h}.${other}.${s}`))).toBe(Code.Unauthenticated);
    expect(await codeOf(tokens.verify("not-a-token"))).toBe(Code.Unauthenticated);
  });

  it("a service holding the public keys only verifies, and cannot mint a token by any means", async () => {
    const k1 = generateTokenKey("k1");
    const metaserver = new AccessTokens([k1]);
    const service = new AccessTokens(publicTokenKeys([k1]));
    expect(metaserver.canSign).toBe(true);
    expect(service.canSign).toBe(false);
    expect((await service.verify((await metaserver.sign(claims, 60)).token)).userId).toBe("42");
    await expect(service.sign(claims, 60)).rejects.toThrow(/only the metaserver signs access tokens/);
    // Algorithm confusion: an HS256 token keyed with the public key (what a verifier holds) is refused.
    const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const now = Math.floor(Date.now() / 1000);
    const body = `${part({ alg: "HS256", kid: "k1" })}.${part({ sub: "42", iss: "satchel", aud: "satchel", iat: now, exp: now + 60 })}`;
    for (const secret of [Buffer.from(k1.x, "base64url"), Buffer.from(k1.x)]) {
      const confused = `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
      expect(await codeOf(service.verify(confused))).toBe(Code.Unauthenticated);
    }
  });

  it("the share links' keys come from the private halves only, and change with them", () => {
    const [k1, k2] = [generateTokenKey("k1"), generateTokenKey("k2")];
    expect(linkKeysOf(publicTokenKeys([k1]))).toEqual([]);
    const [a] = linkKeysOf([k1]);
    expect(a.kid).toBe("k1");
    expect(Buffer.from(a.secret, "base64url").length).toBe(32);
    expect(linkKeysOf([k2])[0].secret).not.toBe(a.secret);
  });

  it("the verifier tells service credentials from user tokens, and names the service", async () => {
    const tokens = new AccessTokens([key("k1")]);
    const verify = tokenVerifier(credentialDigests({ notifyserver: "service-secret", operator: "operator-secret" }), tokens);
    expect(await verify("service-secret")).toEqual({ kind: "service", userId: "service", service: "notifyserver" });
    expect(await verify("operator-secret")).toEqual({ kind: "service", userId: "service", service: "operator" });
    expect((await verify((await tokens.sign(claims, 60)).token)).kind).toBe("user");
    expect(await codeOf(verify("service-secreT"))).toBe(Code.Unauthenticated);
  });
});
