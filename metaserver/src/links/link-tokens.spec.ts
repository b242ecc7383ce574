import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { signLink, verifyLink } from "./link-tokens.js";

const key = (kid: string) => ({ kid, secret: randomBytes(32).toString("base64url") });

describe("share-link tokens", () => {
  const k1 = key("k1");
  const later = new Date(Date.now() + 60_000);

  it("name the link they were signed for, across a key rotation", () => {
    const token = signLink([k1], 42n, later);
    expect(verifyLink([k1], token)).toEqual({ ok: true, linkId: 42n });
    expect(verifyLink([key("k2"), k1], token)).toEqual({ ok: true, linkId: 42n });
  });

  it("are refused when tampered with, signed by another key, or expired", () => {
    const token = signLink([k1], 42n, later);
    expect(verifyLink([k1], token.replace(/^42/, "43")).ok).toBe(false);
    expect(verifyLink([key("k1")], token).ok).toBe(false);
    expect(verifyLink([k1], signLink([k1], 42n, new Date(Date.now() - 1000)))).toEqual({ ok: false, reason: "expired" });
    expect(verifyLink([k1], "../../etc/passwd").ok).toBe(false);
  });
});
