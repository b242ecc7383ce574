import { createHash, randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeShard, encodeShard, SHARD_HEADER_BYTES, shardChecksum, ShardCorruptError } from "./shard-format.js";

const fixedHeader = {
  k: 4,
  m: 2,
  index: 5,
  blockLength: 0x01_0203_0405,
  blockHash: Buffer.from([...Array(32).keys()]),
};
const fixedPayload = Buffer.from([...Array(16).keys()].map((i) => 0xa0 + i));

/**
 * Version 1 of the format, frozen. Stored shards must stay readable: if this test fails, the
 * change needs a new version number, not a new golden.
 */
const GOLDEN_V1 = [
  "53434844", // magic "SCHD"
  "01", // version
  "40", // header length 64
  "04", // k
  "02", // m
  "05", // index
  "000000", // reserved
  "0000000102030405", // block length, u64 BE
  "00000010", // payload length 16, u32 BE
  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", // block hash
  "b225246f", // CRC-32 of the payload
  "25dba14c", // CRC-32 of the 60 header bytes before it
  "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // payload
].join("");

function encodedObject(header = fixedHeader, payload: Uint8Array = fixedPayload): Buffer {
  return Buffer.concat(encodeShard(header, payload));
}

function corruptReason(object: Buffer): string {
  try {
    decodeShard(object);
  } catch (err) {
    expect(err).toBeInstanceOf(ShardCorruptError);
    return (err as ShardCorruptError).reason;
  }
  throw new Error("corruption went undetected");
}

const anyShard = fc
  .record({ k: fc.integer({ min: 1, max: 24 }), m: fc.integer({ min: 0, max: 6 }) })
  .chain(({ k, m }) =>
    fc.record({
      k: fc.constant(k),
      m: fc.constant(m),
      index: fc.nat({ max: k + m - 1 }),
      blockLength: fc.maxSafeNat(),
      blockHash: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b)),
      payload: fc.uint8Array({ maxLength: 300 }),
    }),
  );

describe("shard format v1", () => {
  it("encodes a fixed header and payload to the frozen bytes", () => {
    expect(SHARD_HEADER_BYTES).toBe(64);
    expect(encodedObject().toString("hex")).toBe(GOLDEN_V1);
  });

  it("decodes the frozen bytes", () => {
    const { header, payload } = decodeShard(Buffer.from(GOLDEN_V1, "hex"));
    expect(header).toEqual({
      version: 1,
      k: 4,
      m: 2,
      index: 5,
      blockLength: 0x01_0203_0405,
      payloadLength: 16,
      blockHash: fixedHeader.blockHash,
      payloadChecksum: 0xb225246f,
    });
    expect(payload.equals(fixedPayload)).toBe(true);
  });

  it("returns the header and the payload separately, without copying the payload", () => {
    const payload = randomBytes(100);
    const [header, body] = encodeShard(fixedHeader, payload);
    expect(header.length).toBe(SHARD_HEADER_BYTES);
    expect(body.buffer).toBe(payload.buffer);
    expect(header.readUInt32BE(header.length - 8)).toBe(shardChecksum(payload));
  });

  it("round-trips any header and payload; the decoded payload is a view of the object", () => {
    fc.assert(
      fc.property(anyShard, ({ payload, ...h }) => {
        const object = encodedObject(h, payload);
        expect(object.length).toBe(SHARD_HEADER_BYTES + payload.length);
        const decoded = decodeShard(object);
        expect(decoded.header).toEqual({
          ...h,
          version: 1,
          payloadLength: payload.length,
          payloadChecksum: shardChecksum(payload),
        });
        expect(decoded.payload.equals(payload)).toBe(true);
        expect(decoded.payload.buffer).toBe(object.buffer);
      }),
    );
  });

  it("round-trips a real shard with a real block hash", () => {
    const block = randomBytes(4096);
    const blockHash = createHash("sha256").update(block).digest();
    const object = encodedObject({ k: 1, m: 0, index: 0, blockLength: block.length, blockHash }, block);
    expect(decodeShard(object).payload.equals(block)).toBe(true);
  });
});

describe("corruption is detected", () => {
  it("flipping any single bit anywhere in the object", () => {
    fc.assert(
      fc.property(anyShard, fc.nat(), fc.nat({ max: 7 }), ({ payload, ...h }, at, bit) => {
        const object = encodedObject(h, payload);
        object[at % object.length] ^= 1 << bit;
        corruptReason(object);
      }),
      { numRuns: 1000 },
    );
  });

  it("flipping each bit of the golden object in turn", () => {
    const golden = Buffer.from(GOLDEN_V1, "hex");
    for (let bit = 0; bit < golden.length * 8; bit++) {
      const object = Buffer.from(golden);
      object[bit >> 3] ^= 1 << (bit & 7);
      corruptReason(object);
    }
  });

  it("truncating the object anywhere, or appending bytes", () => {
    fc.assert(
      fc.property(anyShard, fc.nat(), ({ payload, ...h }, cut) => {
        const object = encodedObject(h, payload);
        corruptReason(object.subarray(0, cut % object.length));
        corruptReason(Buffer.concat([object, Buffer.alloc(1 + (cut % 9))]));
      }),
    );
  });

  it("names the reason", () => {
    const golden = () => Buffer.from(GOLDEN_V1, "hex");
    const withByte = (at: number, value: number) => {
      const b = golden();
      b[at] = value;
      return b;
    };
    expect(corruptReason(withByte(0, 0x78))).toMatch(/bad magic/);
    expect(corruptReason(withByte(4, 2))).toMatch(/unknown format version 2/);
    expect(corruptReason(withByte(5, 65))).toMatch(/header length/);
    expect(corruptReason(withByte(6, 3))).toMatch(/header checksum/);
    expect(corruptReason(withByte(SHARD_HEADER_BYTES + 3, 0))).toMatch(/payload checksum/);
    expect(corruptReason(golden().subarray(0, 40))).toMatch(/truncated header/);
    expect(corruptReason(golden().subarray(0, SHARD_HEADER_BYTES + 15))).toMatch(/length mismatch/);
    expect(corruptReason(Buffer.alloc(0))).toMatch(/bad magic/);
    const err = new ShardCorruptError("x");
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toBe("shard object is corrupt: x");
  });
});

describe("encodeShard rejects headers the format cannot hold", () => {
  it.each([
    [{ ...fixedHeader, k: 0 }, /k must be/],
    [{ ...fixedHeader, k: 256 }, /k must be/],
    [{ ...fixedHeader, m: -1 }, /m must be/],
    [{ ...fixedHeader, index: 6 }, /shard index/],
    [{ ...fixedHeader, blockLength: -1 }, /block length/],
    [{ ...fixedHeader, blockHash: Buffer.alloc(31) }, /32 bytes/],
  ])("%#", (h, message) => {
    expect(() => encodeShard(h, fixedPayload)).toThrow(message);
  });
});
