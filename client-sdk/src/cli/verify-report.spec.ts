import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { VerifyResponseSchema } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { hasUnreadable, renderVerifyReport, verifyReportJson } from "./verify-report.js";

const lostHash = Buffer.alloc(32, 0xab);
const degradedHash = Buffer.alloc(32, 0x01);

const report = create(VerifyResponseSchema, {
  versionsChecked: 12n, blocksChecked: 30n, blocksUnreadable: 1n, blocksLost: 1n, blocksBelowFullRedundancy: 2n,
  referencesToMissingBlocks: 0n, seconds: 2.2, bytesRead: 3n * 1024n * 1024n,
  problems: [
    {
      hash: lostHash, kind: "lost", shardsGood: 3, shardsTotal: 6, filesNotListed: 2n,
      files: [
        { namespaceId: 7n, path: "/Docs/Report.pdf", revision: 3n, owner: "alice" },
        { namespaceId: 7n, path: "/docs/old.pdf", revision: 1n, owner: "alice" },
      ],
    },
    { hash: degradedHash, kind: "degraded", shardsGood: 5, shardsTotal: 6, files: [{ namespaceId: 9n, path: "/b.bin", revision: 4n, owner: "bob" }] },
  ],
});

describe("satchel admin verify output", () => {
  it("a summary line, then each problem block with its files in a table, worst first", () => {
    const text = renderVerifyReport(report);
    console.log(text);
    const lines = text.split("\n");
    expect(lines[0]).toBe(
      "verify: 12 versions, 30 blocks checked in 2.2 s (3.0 MiB read): 1 unreadable (1 lost, 0 unavailable), 2 below full redundancy, 0 missing from the block index",
    );
    expect(lines[1]).toMatch(/^KIND\s+SHARDS\s+BLOCK\s+NAMESPACE\s+REVISION\s+OWNER\s+PATH$/);
    expect(lines[2]).toMatch(new RegExp(`^lost\\s+3/6\\s+${"ab".repeat(8)}\\s+7\\s+3\\s+alice\\s+/Docs/Report\\.pdf$`));
    expect(lines[3]).toMatch(/^\s+7\s+1\s+alice\s+\/docs\/old\.pdf$/);
    expect(lines[4]).toMatch(/\(2 more files not listed\)$/);
    expect(lines[5]).toMatch(/^degraded\s+5\/6\s+0101010101010101\s+9\s+4\s+bob\s+\/b\.bin$/);
    // Columns line up: every row's PATH starts where the header's does.
    const pathColumn = lines[1].indexOf("PATH");
    for (const line of lines.slice(2)) expect(line.length).toBeGreaterThan(pathColumn);
    expect(lines[2].indexOf("/Docs")).toBe(pathColumn);
  });

  it("a clean report is one line; the exit status is non-zero only when a file cannot be read", () => {
    const clean = create(VerifyResponseSchema, { versionsChecked: 5n, blocksChecked: 8n, blocksBelowFullRedundancy: 0n });
    expect(renderVerifyReport(clean).split("\n")).toHaveLength(1);
    expect(hasUnreadable(clean)).toBe(false);
    expect(hasUnreadable(report)).toBe(true);
    expect(hasUnreadable(create(VerifyResponseSchema, { blocksBelowFullRedundancy: 4n }))).toBe(false);
    expect(hasUnreadable(create(VerifyResponseSchema, { referencesToMissingBlocks: 1n }))).toBe(true);
  });

  it("--json gives full hex hashes and plain numbers", () => {
    const json = verifyReportJson(report);
    expect(json.problems[0]).toEqual({
      hash: lostHash.toString("hex"), kind: "lost", shardsGood: 3, shardsTotal: 6, filesNotListed: 2,
      files: [
        { namespaceId: 7, path: "/Docs/Report.pdf", revision: 3, owner: "alice" },
        { namespaceId: 7, path: "/docs/old.pdf", revision: 1, owner: "alice" },
      ],
    });
    expect(JSON.parse(JSON.stringify(json)).blocksLost).toBe(1);
  });
});
