import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parentOf, pathKey } from "./paths.js";
import { planSeenDelete, type SubtreeEntry } from "./seen-delete.js";

const X: SubtreeEntry = { path: "/X", cursor: 3n };
const e = (path: string, cursor: number): SubtreeEntry => ({ path, cursor: BigInt(cursor) });

describe("a folder delete removes only what the device saw", () => {
  it("with nothing new inside, the whole folder goes as one subtree", () => {
    const plan = planSeenDelete(X, [e("/X/f1", 4), e("/X/f2", 5), e("/X/sub", 6), e("/X/sub/g", 7)], 10n);
    expect(plan.doomed.sort()).toEqual(["/X", "/X/f1", "/X/f2", "/X/sub", "/X/sub/g"]);
    expect(plan.roots).toEqual(["/X"]);
    expect(plan.kept).toEqual([]);
  });

  it("the issue's case: a file created and a file edited after the device's cursor survive, with the folder", () => {
    const plan = planSeenDelete(X, [e("/X/f1.txt", 12), e("/X/f2.txt", 5), e("/X/f3.txt", 6), e("/X/new.txt", 13)], 10n);
    expect(plan.doomed.sort()).toEqual(["/X/f2.txt", "/X/f3.txt"]);
    expect(plan.roots.sort()).toEqual(["/X/f2.txt", "/X/f3.txt"]);
    expect(plan.kept.sort()).toEqual(["/X", "/X/f1.txt", "/X/new.txt"]);
  });

  it("a new file deep inside keeps every folder above it, and only those", () => {
    const plan = planSeenDelete(X, [e("/X/a", 4), e("/X/a/b", 5), e("/X/a/b/new", 20), e("/X/a/old", 6), e("/X/c", 7), e("/X/c/d", 8)], 10n);
    expect(plan.kept.sort()).toEqual(["/X", "/X/a", "/X/a/b", "/X/a/b/new"]);
    expect(plan.roots.sort()).toEqual(["/X/a/old", "/X/c"]);
  });

  it("property: nothing unseen is doomed, nothing kept loses its parent, every doomed entry is under one root", () => {
    const names = fc.constantFrom("a", "b", "c", "D", "e");
    const tree = fc.uniqueArray(fc.array(names, { minLength: 1, maxLength: 3 }).map((parts) => `/X/${parts.join("/")}`), { maxLength: 20, selector: (p) => pathKey(p) });
    fc.assert(fc.property(tree, fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 20, maxLength: 20 }), fc.integer({ min: 0, max: 30 }), fc.integer({ min: 1, max: 30 }), (paths, cursors, seen, rootCursor) => {
      // Every ancestor of an entry is an entry too (a real tree).
      const all = new Map<string, SubtreeEntry>();
      paths.forEach((p, i) => {
        for (let q = p; q !== "/X"; q = parentOf(q)) if (!all.has(pathKey(q))) all.set(pathKey(q), e(q, cursors[(i + q.length) % cursors.length]));
      });
      const inside = [...all.values()];
      const folder = e("/X", rootCursor);
      const plan = planSeenDelete(folder, inside, BigInt(seen));
      const cursorOf = new Map([folder, ...inside].map((x) => [pathKey(x.path), x.cursor]));
      const doomed = new Set(plan.doomed.map(pathKey));
      for (const d of plan.doomed) expect(cursorOf.get(pathKey(d))! <= BigInt(seen)).toBe(true);
      for (const k of plan.kept) if (pathKey(k) !== "/x") expect(doomed.has(pathKey(parentOf(k)))).toBe(false);
      expect(plan.doomed.length + plan.kept.length).toBe(inside.length + 1);
      const roots = new Set(plan.roots.map(pathKey));
      for (const d of plan.doomed) {
        let p = d;
        while (!roots.has(pathKey(p))) p = parentOf(p);
        expect(doomed.has(pathKey(p))).toBe(true);
      }
      if (inside.every((x) => x.cursor <= BigInt(seen)) && folder.cursor <= BigInt(seen)) expect(plan.roots).toEqual(["/X"]);
    }));
  });
});
