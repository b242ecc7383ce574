import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConnectError, Code } from "../errors.js";
import { ancestorsOf, conflictedCopyPath, nameOf, normalizePath, parentOf, pathKey } from "./paths.js";

const rejects = (p: string) => {
  try {
    normalizePath(p);
  } catch (err) {
    return err instanceof ConnectError && err.code === Code.InvalidArgument;
  }
  return false;
};

describe("paths", () => {
  it("normalises to NFC with one leading slash and no trailing slash", () => {
    expect(normalizePath("/a/b/")).toBe("/a/b");
    expect(normalizePath("")).toBe("/");
    expect(normalizePath("/Cafe\u0301")).toBe("/Caf\u00e9");
  });

  it("rejects traversal, empty segments, control characters and relative paths", () => {
    for (const bad of ["/a/../b", "/./a", "/a//b", "/a\u0000b", "/a\nb", "a/b", "/" + "x".repeat(256)]) {
      expect(rejects(bad), bad).toBe(true);
    }
  });

  it("collides case-insensitively", () => {
    expect(pathKey(normalizePath("/Docs/Report.PDF"))).toBe(pathKey(normalizePath("/docs/report.pdf")));
  });

  it("splits parents and names", () => {
    expect(parentOf("/a/b/c")).toBe("/a/b");
    expect(parentOf("/a")).toBe("/");
    expect(nameOf("/a/b/c")).toBe("c");
    expect(ancestorsOf("/a/b/c")).toEqual(["/a", "/a/b"]);
  });

  it("property: normalising is idempotent and valid segments survive unchanged", () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9 _\-\u00e9\u4e2d]{1,12}$/).filter((s) => s !== "." && s !== "..");
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 8 }), (segs) => {
        const p = normalizePath("/" + segs.join("/"));
        expect(normalizePath(p)).toBe(p);
        expect(p.split("/").slice(1)).toEqual(segs.map((s) => s.normalize("NFC")));
      }),
    );
  });

  it("property: a path containing '..' or a control character is always rejected", () => {
    fc.assert(
      fc.property(fc.string(), fc.constantFrom("..", "\u0000", "\u001f", "\u007f"), fc.string(), (a, bad, b) => {
        const p = bad === ".." ? `/${a.replace(/\//g, "")}x/../${b}` : `/${a}${bad}${b}`;
        expect(rejects(p)).toBe(true);
      }),
    );
  });
});

describe("conflicted copies", () => {
  const day = new Date("2026-11-24T10:00:00Z");
  it("are named like Dropbox's, beside the original, keeping the extension", () => {
    expect(conflictedCopyPath("/docs/report.docx", "laptop", day, 1)).toBe("/docs/report (laptop's conflicted copy 2026-11-24).docx");
    expect(conflictedCopyPath("/Makefile", "pc", day, 2)).toBe("/Makefile (pc's conflicted copy 2026-11-24) (2)");
    expect(conflictedCopyPath("/.bashrc", "pc", day, 1)).toBe("/.bashrc (pc's conflicted copy 2026-11-24)");
  });

  it("are valid paths in the same folder for any name", () => {
    fc.assert(fc.property(fc.stringMatching(/^[a-zA-Z0-9 ._-]{1,60}$/).filter((s) => s !== "." && s !== ".."), (name) => {
      const copy = conflictedCopyPath(`/f/${name}`, "laptop", day, 1);
      expect(normalizePath(copy)).toBe(copy);
      expect(parentOf(copy)).toBe("/f");
    }));
  });
});
