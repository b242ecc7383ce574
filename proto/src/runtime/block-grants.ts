import { createHmac, timingSafeEqual } from "node:crypto";
import type { SigningKey } from "./tokens.js";

/**
 * Block grants: the platform's signed word that one user may read one block — and so holds its
 * bytes — until an expiry. A content hash is not a capability: the blockserver serves a block to a
 * user only with a grant, and the metaserver lets a commit name a block only with one.
 *
 * Who issues them: the metaserver, with every block list it shows a user who may read the file
 * (file metadata, listings, the journal, revisions); the blockserver, to a user who has just sent
 * a block's bytes (verified against the hash). Both verify them locally, without a round trip.
 *
 * A grant is bound to the user, the block and the expiry; it is worthless to anyone else. Its
 * lifetime bounds how long access outlives a revoked share: a reader refreshes grants through the
 * metaserver, which checks membership again.
 *
 * Layout, version 1 (stored nowhere; golden bytes in the spec keep issuers and verifiers of
 * different releases in step):
 *   0x01 | kid length (1 byte) | kid (UTF-8) | expiry (uint32 BE, unix seconds) | MAC (16 bytes)
 * MAC = the first 16 bytes of HMAC-SHA256(grant key, "satchel-block-grant-v1" 0x00 | user id
 * (decimal) 0x00 | block hash | expiry (uint32 BE)). Each MAC key is derived from a configured
 * grant key of the same kid (SATCHEL_GRANT_KEYS, held by the metaserver and the blockserver only:
 * HMAC-SHA256(secret, "satchel block grants")); the first signs, all verify (rotation).
 */
const VERSION = 1;
const MAC_BYTES = 16;
const DOMAIN = Buffer.from("satchel-block-grant-v1\0");
const KEY_LABEL = "satchel block grants";

/** Why a grant was refused; "ok" when it holds. */
export type GrantCheck = "ok" | "missing" | "malformed" | "unknown-key" | "expired" | "forged";

export class BlockGrants {
  private readonly keys = new Map<string, Buffer>();
  private readonly signingKid: Buffer;
  private readonly signingKey: Buffer;

  /** ttlSeconds: how long a grant issued now stays valid. */
  constructor(keys: SigningKey[], readonly ttlSeconds: number) {
    if (keys.length === 0) throw new Error("block grants need at least one grant key (SATCHEL_GRANT_KEYS)");
    for (const k of keys) {
      if (Buffer.byteLength(k.kid) > 255) throw new Error(`token key id "${k.kid.slice(0, 20)}…" is longer than 255 bytes`);
      this.keys.set(k.kid, createHmac("sha256", Buffer.from(k.secret, "base64url")).update(KEY_LABEL).digest());
    }
    this.signingKid = Buffer.from(keys[0].kid);
    this.signingKey = this.keys.get(keys[0].kid)!;
  }

  /** The expiry (unix seconds) of grants issued now: one per response, shared by its grants. */
  expiryNow(nowMs = Date.now()): number {
    return Math.floor(nowMs / 1000) + this.ttlSeconds;
  }

  /** A grant for `userId` to read the block `hash` until `expiry` (unix seconds). */
  issue(userId: string, hash: Uint8Array, expiry = this.expiryNow()): Uint8Array {
    const kid = this.signingKid;
    const out = Buffer.allocUnsafe(2 + kid.length + 4 + MAC_BYTES);
    out[0] = VERSION;
    out[1] = kid.length;
    kid.copy(out, 2);
    out.writeUInt32BE(expiry, 2 + kid.length);
    mac(this.signingKey, userId, hash, expiry).copy(out, 6 + kid.length, 0, MAC_BYTES);
    return out;
  }

  /** Whether `grant` lets `userId` read `hash` at `nowMs`. */
  check(userId: string, hash: Uint8Array, grant: Uint8Array | undefined, nowMs = Date.now()): GrantCheck {
    if (!grant || grant.length === 0) return "missing";
    const g = Buffer.from(grant.buffer, grant.byteOffset, grant.byteLength);
    if (g[0] !== VERSION || g.length < 2) return "malformed";
    const kidLength = g[1];
    if (g.length !== 2 + kidLength + 4 + MAC_BYTES) return "malformed";
    const key = this.keys.get(g.toString("utf8", 2, 2 + kidLength));
    if (!key) return "unknown-key";
    const expiry = g.readUInt32BE(2 + kidLength);
    const expected = mac(key, userId, hash, expiry).subarray(0, MAC_BYTES);
    if (!timingSafeEqual(expected, g.subarray(6 + kidLength))) return "forged";
    return expiry * 1000 > nowMs ? "ok" : "expired";
  }
}

function mac(key: Buffer, userId: string, hash: Uint8Array, expiry: number): Buffer {
  const tail = Buffer.allocUnsafe(4);
  tail.writeUInt32BE(expiry);
  return createHmac("sha256", key).update(DOMAIN).update(userId).update("\0").update(hash).update(tail).digest();
}

/** What a refused grant means for the caller, as the message of a PERMISSION_DENIED. */
export function grantRefusal(check: Exclude<GrantCheck, "ok">, hashHex: string): string {
  switch (check) {
    case "missing":
      return `block ${hashHex}: no grant; read the file's metadata (it carries a grant for each block) and pass the block's grant`;
    case "expired":
      return `block ${hashHex}: the grant has expired; read the file's metadata again for fresh grants`;
    default:
      return `block ${hashHex}: the grant is not valid for this block and caller (${check})`;
  }
}
