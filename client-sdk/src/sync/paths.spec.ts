import { describe, expect, it } from "vitest";
import { baseName, foldKey, parentPath, within } from "./paths.js";

describe("remote paths as the server compares them", () => {
  it("folds case and Unicode form", () => {
    expect(foldKey("/Docs/Café.txt")).toBe(foldKey("/docs/cafe\u0301.TXT"));
    expect(foldKey("/a")).not.toBe(foldKey("/b"));
  });

  it("a path lies within a folder of any spelling, never within a sibling sharing its prefix", () => {
    expect(within("/S/D0/o20.part", "/S/d0")).toBe(true);
    expect(within("/S/d0", "/S/D0")).toBe(true);
    expect(within("/S/d00/x", "/S/d0")).toBe(false);
    expect(within("/anything", "/")).toBe(true);
  });

  it("the parent of a top-level path is the root", () => {
    expect(parentPath("/a.txt")).toBe("/");
    expect(parentPath("/d/e/a.txt")).toBe("/d/e");
  });

  it("the last name of a path", () => {
    expect(baseName("/d/e/a.txt")).toBe("a.txt");
    expect(baseName("/D0")).toBe("D0");
  });
});
