import { createHmac, timingSafeEqual } from "node:crypto";
import type { SigningKey } from "@satchel/proto";

/**
 * Share-link tokens: "<link id>.<expiry, unix seconds>.<HMAC>", signed with the access-token keys
 * (the first signs, all verify, so links survive a key rotation). The signature stops guessing
 * and tampering; the database row is what makes a link revocable.
 */
export function signLink(keys: SigningKey[], linkId: bigint, expiresAt: Date): string {
  const body = `${linkId}.${Math.floor(expiresAt.getTime() / 1000)}`;
  return `${body}.${mac(keys[0], body)}`;
}

export type LinkCheck = { ok: true; linkId: bigint } | { ok: false; reason: "malformed" | "expired" };

export function verifyLink(keys: SigningKey[], token: string, now = Date.now()): LinkCheck {
  const m = /^(\d{1,19})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return { ok: false, reason: "malformed" };
  const body = `${m[1]}.${m[2]}`;
  const given = Buffer.from(m[3]);
  const valid = keys.some((k) => {
    const want = Buffer.from(mac(k, body));
    return want.length === given.length && timingSafeEqual(want, given);
  });
  if (!valid) return { ok: false, reason: "malformed" };
  if (Number(m[2]) * 1000 <= now) return { ok: false, reason: "expired" };
  return { ok: true, linkId: BigInt(m[1]) };
}

function mac(key: SigningKey, body: string): string {
  return createHmac("sha256", Buffer.from(key.secret, "base64url")).update(`share-link:${body}`).digest("base64url");
}
