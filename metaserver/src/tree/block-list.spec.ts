import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { packBlockList, unpackBlockList } from "./block-list.js";

describe("block list codec", () => {
  it("property: unpack(pack(list)) is the list", () => {
    const entry = fc.record({ hash: fc.uint8Array({ minLength: 32, maxLength: 32 }), size: fc.integer({ min: 0, max: 0xffffffff }) });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 50 }), (list) => {
        const back = unpackBlockList(packBlockList(list));
        expect(back.map((b) => ({ hash: new Uint8Array(b.hash), size: b.size }))).toEqual(list);
      }),
    );
  });

  it("rejects a truncated list", () => {
    expect(() => unpackBlockList(Buffer.alloc(35))).toThrow(/corrupt block list/);
  });
});
