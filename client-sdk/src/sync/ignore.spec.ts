import { describe, expect, it } from "vitest";
import { isIgnored } from "./ignore.js";

describe("ignore rules", () => {
  it("skip editor swap files, system files and partial downloads, anywhere in the tree", () => {
    for (const p of ["/.DS_Store", "/a/.report.docx.swp", "/a/notes.txt~", "/x/.~lock.budget.ods#", "/big.iso.part", "/movie.mp4.partial",
      "/d/.f.bin.satchel-0b7c2c1e-4f7a-4d55-9a8e-2b9f1d3c4e5f.partial", "/.satchel-sync/state.json", "/a/~$report.docx", "/a/#draft#"]) {
      expect(isIgnored(p), p).toBe(true);
    }
  });

  it("keep ordinary files, including dotfiles", () => {
    for (const p of ["/report.docx", "/.bashrc", "/a/b/c.txt", "/swap.txt", "/notes.tmp.txt"]) expect(isIgnored(p), p).toBe(false);
  });
});
