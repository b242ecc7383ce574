import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { foldKey, planUserAction, type LocalListing } from "./plan.js";
import { ISSUE_SCENARIO_SEED, makeSimSchedule, type UserAction } from "./schedule.js";

const ACTIONS: UserAction[] = [
  "create", "edit", "append", "truncate", "delete", "rename", "move", "case-rename", "create-nfd", "mkdir",
  "rename-folder", "move-folder", "delete-folder", "case-rename-folder",
];
const listing: LocalListing = { files: ["/X/f1.txt", "/X/f2.txt", "/d0/f0.txt", "/f4.txt"], dirs: ["/X", "/d0"] };

describe("sync simulation schedules and plans", () => {
  it("a seed gives the same schedule every time, and different seeds differ", () => {
    expect(makeSimSchedule(7, { devices: 3, steps: 30 })).toEqual(makeSimSchedule(7, { devices: 3, steps: 30 }));
    expect(makeSimSchedule(7, { devices: 3, steps: 30 })).not.toEqual(makeSimSchedule(8, { devices: 3, steps: 30 }));
  });

  it("seeds cover every kind of step: all user actions, offline periods and kills", () => {
    const kinds = new Set<string>();
    for (let seed = 1; seed <= 30; seed++) {
      for (const s of makeSimSchedule(seed, { devices: 3, steps: 24 }).steps) kinds.add(s.kind === "user" ? s.action : s.kind);
    }
    for (const k of [...ACTIONS, "offline", "kill", "wait", "other-write", "service", "leave", "unshare"]) expect(kinds, k).toContain(k);
  });

  it("the last device is a member of the owner's shared folder, a viewer in some seeds and an editor in others", () => {
    const roles = new Set<string>();
    for (let seed = 1; seed <= 30; seed++) {
      const s = makeSimSchedule(seed, { devices: 3, steps: 100 });
      expect(s.member?.device).toBe(2);
      roles.add(s.member!.role);
      for (const step of s.steps) if (step.kind === "leave") expect(step.device).toBe(2);
    }
    expect([...roles].sort()).toEqual(["editor", "viewer"]);
    expect(makeSimSchedule(1, { devices: 2, steps: 10 }).member).toBeUndefined();
  });

  it("a scoped user acts only inside its root, and never renames, moves or deletes a fixed folder", () => {
    const wide: LocalListing = { files: ["/a.txt", "/S/f1.txt", "/S/d0/f2.txt"], dirs: ["/S", "/S/d0", "/d1"] };
    fc.assert(fc.property(fc.constantFrom(...ACTIONS), fc.nat(), (action, pick) => {
      const member = planUserAction(wide, action, pick, { root: "/S", fixed: ["/S"] });
      for (const p of member ? [member.op === "rename" ? member.from : member.path, ...(member.op === "rename" ? [member.to] : [])] : []) {
        expect(p.startsWith("/S/"), `${action}: ${JSON.stringify(member)}`).toBe(true);
      }
      const owner = planUserAction(wide, action, pick, { fixed: ["/S"] });
      if (owner?.op === "rename" && owner.folder) expect(owner.from).not.toBe("/S");
      if (owner?.op === "rm" && owner.folder) expect(owner.path).not.toBe("/S");
    }));
  });

  it("the issue's scenario is a fixed seed: A renames X to Y while B appends to X/f1.txt and adds X/new.txt", () => {
    const s = makeSimSchedule(ISSUE_SCENARIO_SEED, { devices: 3, steps: 24 });
    const changes = s.steps.map((step) => (step.kind === "user" ? planUserAction(listing, step.action, step.pick) : undefined));
    expect(changes).toEqual([
      { op: "rename", from: "/X", to: "/Y", folder: true },
      { op: "write", path: "/X/f1.txt", mode: "append" },
      { op: "write", path: "/X/new.txt", mode: "create" },
    ]);
    expect(s.steps.map((step) => step.kind === "user" && step.device)).toEqual([0, 1, 1]);
  });

  it("a plan never makes a twin on one device: a new name or a rename target never folds onto another entry", () => {
    fc.assert(fc.property(
      fc.constantFrom(...ACTIONS), fc.nat(), fc.uniqueArray(fc.constantFrom("/a.txt", "/d0/f1.txt", "/d0/F2.txt", "/caf\u00e9.txt", "/d0/d1/f3.txt"), { maxLength: 5 }),
      (action, pick, files) => {
        const dirs = ["/d0", "/d0/d1"];
        const change = planUserAction({ files, dirs }, action, pick);
        const keys = new Set([...files, ...dirs].map(foldKey));
        if (change?.op === "rename") {
          const sameKey = foldKey(change.from) === foldKey(change.to);
          if (!sameKey) expect(keys.has(foldKey(change.to)), `${change.from} -> ${change.to}`).toBe(false);
          expect(change.to.includes(`${change.from}/`)).toBe(false);
        }
        if (change?.op === "write" && change.mode === "create") expect(keys.has(foldKey(change.path))).toBe(false);
        if (change?.op === "mkdir") expect(keys.has(foldKey(change.path))).toBe(false);
      },
    ));
  });

  it("nothing to act on is no change, not an error", () => {
    for (const a of ["edit", "delete", "rename", "rename-folder", "delete-folder", "case-rename-folder"] as UserAction[]) {
      expect(planUserAction({ files: [], dirs: [] }, a, 5)).toBeUndefined();
    }
  });
});
