import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AccessTokens, tokenVerifier, type SigningKey } from "./tokens.js";

const key = (kid: string): SigningKey => ({ kid, secret: randomBytes(32).toString("base64url") });
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
    const forged = await new AccessTokens([{ kid: "k1", secret: randomBytes(32).toString("base64url") }]).sign(claims, 60);
    expect(await codeOf(tokens.verify(forged.token))).toBe(Code.Unauthenticated);
    const [h, p, s] = (await tokens.sign(claims, 60)).token.split(".");
    const other = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, "base64url").toString()), sub: "43" })).toString("base64url");
    expect(await codeOf(tokens.verify(`${h}.${other}.${s}`))).toBe(Code.Unauthenticated);
    expect(await codeOf(tokens.verify("not-a-token"))).toBe(Code.Unauthenticated);
  });

  it("the verifier tells the service token from user tokens", async () => {
    const tokens = new AccessTokens([key("k1")]);
    const verify = tokenVerifier("service-secret", tokens);
    expect(await verify("service-secret")).toEqual({ kind: "service", userId: "service" });
    expect((await verify((await tokens.sign(claims, 60)).token)).kind).toBe("user");
    expect(await codeOf(verify("service-secreT"))).toBe(Code.Unauthenticated);
  });
});
