import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeRecord, decodeRecordHeader, encodeRecord, RECORD_HEADER_BYTES, recordLength, RecordCorruptError, scanRecords } from "./record.js";

const fixedHash = Buffer.from([...Array(32).keys()]);
const fixedPayload = Buffer.from([...Array(16).keys()].map((i) => 0xa0 + i));

/**
 * Version 1 of the record format, frozen. Packed blocks must stay readable: if this test fails, the
 * change needs a new version number, not a new golden.
 */
const GOLDEN_V1 = [
  "53565243", // magic "SVRC"
  "01", // version
  "34", // header length 52
  "00", // flags
  "00", // reserved
  "00000010", // payload length 16, u32 BE
  "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", // block hash
  "b225246f", // CRC-32 of the payload
  "fee56a2e", // CRC-32 of the 48 header bytes before it
  "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // payload
].join("");

const record = (payload: Uint8Array, hash: Uint8Array = createHash("sha256").update(payload).digest()) => Buffer.concat(encodeRecord(hash, payload));

function corruptReason(bytes: Buffer): string {
  try {
    decodeRecord(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(RecordCorruptError);
    return (err as RecordCorruptError).reason;
  }
  throw new Error("corruption went undetected");
}

describe("volume record format", () => {
  it("encodes version 1 byte for byte as frozen", () => {
    expect(record(fixedPayload, fixedHash).toString("hex")).toBe(GOLDEN_V1);
    const { header, payload, end } = decodeRecord(Buffer.from(GOLDEN_V1, "hex"));
    expect(header).toEqual({ version: 1, flags: 0, payloadLength: 16, blockHash: fixedHash, payloadChecksum: 0xb225246f });
    expect(payload).toEqual(fixedPayload);
    expect(end).toBe(recordLength(16));
  });

  it("round-trips any payload, at any offset of a stretch of records", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 8 }), (payloads) => {
        const bytes = Buffer.concat(payloads.map((p) => record(p)));
        let offset = 0;
        for (const p of payloads) {
          const { header, payload, end } = decodeRecord(bytes, offset);
          expect(payload).toEqual(Buffer.from(p));
          expect(header.blockHash).toEqual(createHash("sha256").update(p).digest());
          expect(decodeRecordHeader(bytes, offset)).toEqual(header);
          offset = end;
        }
        expect(offset).toBe(bytes.length);
      }),
    );
  });

  it("detects every single flipped bit, in the header and in the payload", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(), (p, at) => {
        const bytes = record(p);
        const bit = at % (bytes.length * 8);
        bytes[bit >> 3] ^= 1 << (bit & 7);
        expect(corruptReason(bytes)).toMatch(/magic|version|header length|checksum|flags|reserved|truncated/);
      }),
    );
  });

  it("names what is wrong with a damaged record", () => {
    const good = record(fixedPayload, fixedHash);
    expect(corruptReason(good.subarray(0, 30))).toBe("truncated header (30 bytes)");
    expect(corruptReason(good.subarray(0, good.length - 1))).toBe("truncated payload: header says 16 bytes, 15 are there");
    expect(corruptReason(Buffer.from("SCHD" + "x".repeat(60)))).toBe("bad magic, not a volume record");
    const flipped = Buffer.from(good);
    flipped[RECORD_HEADER_BYTES + 3] ^= 0x40;
    expect(corruptReason(flipped)).toBe("payload checksum mismatch");
    expect(() => encodeRecord(Buffer.alloc(31), fixedPayload)).toThrow(/32 bytes/);
    expect(() => encodeRecord(fixedHash, fixedPayload, 1)).toThrow(/flags 1 are not defined/);
  });

  it("a scan returns every sound record and stops where a torn write begins, or at zero padding", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 100 }), { maxLength: 6 }), fc.nat({ max: 64 }), fc.nat(), (payloads, padding, cut) => {
        const sound = Buffer.concat(payloads.map((p) => record(p)));
        // Padded (a sealed data shard): complete.
        const padded = scanRecords(Buffer.concat([sound, Buffer.alloc(padding)]));
        expect(padded.records.map((r) => r.header.payloadLength)).toEqual(payloads.map((p) => p.length));
        expect(padded.soundUpTo).toBe(sound.length);
        expect(padded.problem).toBeUndefined();
        // A record cut short after them (a torn append): the sound ones, and where the damage starts.
        const torn = record(Buffer.from("the last block, torn"));
        const scan = scanRecords(Buffer.concat([sound, torn.subarray(0, 1 + (cut % (torn.length - 1)))]));
        expect(scan.records).toHaveLength(payloads.length);
        expect(scan.soundUpTo).toBe(sound.length);
        expect(scan.problem?.offset).toBe(sound.length);
      }),
    );
  });
});
