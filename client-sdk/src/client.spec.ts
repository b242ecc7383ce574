import { describe, expect, it } from "vitest";
import { isPartialDownload, partialDownloadName } from "./client.js";

describe("a download's temporary file", () => {
  it("is named so that a sync agent can tell it from the user's files", () => {
    const name = partialDownloadName("report.txt");
    expect(name).toMatch(/^\.report\.txt\.satchel-[0-9a-f-]{36}\.partial$/);
    expect(isPartialDownload(name)).toBe(true);
    expect(isPartialDownload(partialDownloadName("café (2).txt"))).toBe(true);
    for (const users of ["report.txt.partial", ".report.txt.partial", ".report.txt.satchel-1234.partial", "report.txt"]) {
      expect(isPartialDownload(users), users).toBe(false);
    }
  });
});
