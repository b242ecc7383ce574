import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BlockGrants } from "./block-grants.js";

const k1 = { kid: "k1", secret: Buffer.alloc(32, 1).toString("base64url") };
const k2 = { kid: "k2", secret: Buffer.alloc(32, 2).toString("base64url") };
const hashA = Buffer.alloc(32, 0xaa);
const hashB = Buffer.alloc(32, 0xbb);
const NOW = 1_800_000_000_000;

describe("block grants", () => {
  it("golden bytes: the version 1 layout an issuer of any release must produce", () => {
    const grants = new BlockGrants([k1], 300);
    const g = Buffer.from(grants.issue("42", hashA, 1_800_000_300));
    // Computed independently (Python hmac) from the layout in block-grants.ts.
    expect(g.toString("hex")).toBe("01026b31" + "6b49d32c" + "a96cac2057f05b28867d55d2ff816377");
    expect(grants.check("42", hashA, g, NOW)).toBe("ok");
  });

  it("hold for their user, block and lifetime only", () => {
    const grants = new BlockGrants([k1], 300);
    const g = grants.issue("42", hashA, grants.expiryNow(NOW));
    expect(grants.check("42", hashA, g, NOW)).toBe("ok");
    expect(grants.check("43", hashA, g, NOW)).toBe("forged");
    expect(grants.check("4", hashA, g, NOW)).toBe("forged");
    expect(grants.check("42", hashB, g, NOW)).toBe("forged");
    expect(grants.check("42", hashA, g, NOW + 300_000)).toBe("expired");
    expect(grants.check("42", hashA, undefined, NOW)).toBe("missing");
    expect(grants.check("42", hashA, new Uint8Array(0), NOW)).toBe("missing");
    expect(grants.check("42", hashA, g.subarray(0, g.length - 1), NOW)).toBe("malformed");
  });

  it("rotate with the token keys: a new first key signs, the old one still verifies until dropped", () => {
    const before = new BlockGrants([k1], 300);
    const after = new BlockGrants([k2, k1], 300);
    const old = before.issue("7", hashA, before.expiryNow(NOW));
    expect(after.check("7", hashA, old, NOW)).toBe("ok");
    expect(new BlockGrants([k2], 300).check("7", hashA, old, NOW)).toBe("unknown-key");
    const fresh = after.issue("7", hashA, after.expiryNow(NOW));
    expect(Buffer.from(fresh).subarray(2, 4).toString()).toBe("k2");
    expect(before.check("7", hashA, fresh, NOW)).toBe("unknown-key");
  });

  it("property: any change to a grant's bytes, its user or its block is refused", () => {
    const grants = new BlockGrants([k1], 300);
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 2n ** 63n }), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(), fc.integer({ min: 1, max: 255 }),
        (user, hash, at, flip) => {
          const g = Buffer.from(grants.issue(user.toString(), hash, grants.expiryNow(NOW)));
          expect(grants.check(user.toString(), hash, g, NOW)).toBe("ok");
          const bad = Buffer.from(g);
          bad[at % bad.length] ^= flip;
          expect(grants.check(user.toString(), hash, bad, NOW)).not.toBe("ok");
          expect(grants.check((user + 1n).toString(), hash, g, NOW)).not.toBe("ok");
          const other = Buffer.from(hash);
          other[at % 32] ^= flip;
          expect(grants.check(user.toString(), other, g, NOW)).not.toBe("ok");
        },
      ),
      { numRuns: 300 },
    );
  });
});
