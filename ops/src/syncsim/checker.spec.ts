import { describe, expect, it } from "vitest";
import { checkSimulation, FOLDER, type DeviceView, type LoggedEvent, type ServerView } from "./checker.js";

const rev = (revision: number, key: string, cursor = revision) => ({ revision: String(revision), key, cursor: String(cursor) });
const upload = (path: string, revision: number, parent: number, key: string): LoggedEvent =>
  ({ kind: "upload", path, revision: String(revision), parentRevision: String(parent), blocks: key.split(",") });
const device = (name: string, tree: Record<string, string>, events: LoggedEvent[] = []): DeviceView =>
  ({ name, tree: new Map(Object.entries(tree)), events });

/** Two devices holding `tree`, the server holding it too, with the given trash and histories. */
function world(tree: Record<string, string>, server: Partial<ServerView>, eventsA: LoggedEvent[] = [], eventsB: LoggedEvent[] = []) {
  const view: ServerView = { live: new Map(Object.entries(tree)), trashed: [], histories: [], ...server };
  return checkSimulation([device("A", tree, eventsA), device("B", tree, eventsB)], view);
}

describe("sync simulation checker", () => {
  it("passes one tree everywhere whose every version is live, edited from itself, or knowingly deleted", () => {
    const r = world(
      { "/d": FOLDER, "/d/a.txt": "k2", "/d/b (B's conflicted copy 2026-12-01).txt": "kb" },
      {
        trashed: [{ path: "/d/gone.txt", revision: "1" }],
        histories: [
          { path: "/d/a.txt", revisions: [rev(1, "k1"), rev(2, "k2")] },
          { path: "/d/gone.txt", revisions: [rev(1, "kg", 3)] },
          { path: "/d/b (B's conflicted copy 2026-12-01).txt", revisions: [rev(1, "kb")] },
        ],
      },
      [upload("/d/a.txt", 1, 0, "k1"), upload("/d/a.txt", 2, 1, "k2"), { kind: "delete-remote", path: "/d/gone.txt", revision: "1", blocks: ["kg"] }],
      [upload("/d/gone.txt", 1, 0, "kg"), upload("/d/b (B's conflicted copy 2026-12-01).txt", 1, 0, "kb")],
    );
    expect(r.violations).toEqual([]);
    expect(r.conflicts).toBe(1);
    expect(r.versionsSynced).toBe(4);
  });

  it("finds a device that differs from the server, and twins of one name", () => {
    const server: ServerView = { live: new Map([["/a.txt", "k1"]]), trashed: [], histories: [{ path: "/a.txt", revisions: [rev(1, "k1")] }] };
    const r = checkSimulation([
      device("A", { "/a.txt": "k1" }),
      device("B", { "/a.txt": "k1", "/A.txt": "k1" }),
      device("C", { "/a.txt": "other" }),
    ], server);
    expect(r.violations.some((v) => v.startsWith("B holds twins"))).toBe(true);
    expect(r.violations.some((v) => v.startsWith("B differs") && v.includes("extra /A.txt"))).toBe(true);
    expect(r.violations.some((v) => v.startsWith("C differs") && v.includes("other content at /a.txt"))).toBe(true);
  });

  it("takes a name in NFD on a device as the server's NFC name", () => {
    const nfc = "/caf\u00e9.txt";
    const server: ServerView = { live: new Map([[nfc, "k"]]), trashed: [], histories: [{ path: nfc, revisions: [rev(1, "k")] }] };
    expect(checkSimulation([device("A", { [nfc.normalize("NFD")]: "k" })], server).violations).toEqual([]);
  });

  it("reports a synced version found nowhere as lost", () => {
    const r = world({ "/a.txt": "k2" }, { histories: [{ path: "/a.txt", revisions: [rev(2, "k2")] }] }, [upload("/a.txt", 1, 0, "k1")]);
    expect(r.violations).toEqual([expect.stringMatching(/^\/a\.txt r1 \(uploaded by A\) is lost/)]);
  });

  it("reports a version replaced by an edit made from another revision, with no delete before", () => {
    const r = world(
      { "/a.txt": "k3" },
      { histories: [{ path: "/a.txt", revisions: [rev(1, "k1"), rev(2, "k2"), rev(3, "k3")] }] },
      [upload("/a.txt", 1, 0, "k1"), upload("/a.txt", 2, 1, "k2")],
      [upload("/a.txt", 3, 1, "k3")],
    );
    expect(r.violations).toEqual([expect.stringContaining("/a.txt r2 (uploaded by A) was replaced at /a.txt by r3 from B, made from r1")]);
  });

  it("reads a path's history holding two files' versions (a file moved onto a deleted one) by parents, not by order", () => {
    // /f1.txt r10 (C's) was deleted by A having seen it; A then moved /X/f1.txt (r7, edited to r12) onto the name.
    const histories = [{ path: "/f1.txt", revisions: [rev(7, "k7"), rev(10, "k10"), rev(12, "k12")] }];
    const events = [
      upload("/X/f1.txt", 7, 0, "k7"), upload("/f1.txt", 10, 0, "k10"), upload("/X/f1.txt", 12, 7, "k12"),
      { kind: "delete-remote", path: "/f1.txt", revision: "10", blocks: ["k10"] } as LoggedEvent,
    ];
    expect(world({ "/f1.txt": "k12" }, { histories }, events).violations).toEqual([]);
    // Without that delete, C's version would have been lost.
    expect(world({ "/f1.txt": "k12" }, { histories }, events.slice(0, 3)).violations).toEqual([expect.stringContaining("r10")]);
  });

  it("reports what is in the trash when no device deleted that revision, or its folder having seen it", () => {
    const histories = [{ path: "/d/x.txt", revisions: [rev(1, "k1", 5), rev(2, "k2", 9)] }];
    const trashed = [{ path: "/d/x.txt", revision: "2" }];
    const seenBefore: LoggedEvent = { kind: "delete-remote", path: "/d", seenCursor: "8" };
    const staleFile: LoggedEvent = { kind: "delete-remote", path: "/d/x.txt", revision: "1", blocks: ["k1"] };
    const r = world({}, { trashed, histories }, [upload("/d/x.txt", 1, 0, "k1"), upload("/d/x.txt", 2, 1, "k2"), seenBefore, staleFile]);
    expect(r.violations).toEqual([expect.stringContaining("/d/x.txt r2 is in the trash, but no device deleted that revision")]);
    const seenAfter: LoggedEvent = { kind: "delete-remote", path: "/d", seenCursor: "9" };
    expect(world({}, { trashed, histories }, [upload("/d/x.txt", 1, 0, "k1"), upload("/d/x.txt", 2, 1, "k2"), seenAfter]).violations).toEqual([]);
  });

  it("follows a deleted folder's trash where a later move took it", () => {
    const histories = [{ path: "/m/sub/x.txt", revisions: [rev(1, "k1", 2)] }];
    const trashed = [{ path: "/m/sub/x.txt", revision: "1" }];
    const events: LoggedEvent[] = [
      upload("/d/sub/x.txt", 1, 0, "k1"),
      { kind: "delete-remote", path: "/d/sub", seenCursor: "4", at: 10 },
      { kind: "move-remote", path: "/d", to: "/m", at: 20 },
    ];
    expect(world({}, { trashed, histories }, events).violations).toEqual([]);
    const moveFirst = events.map((e) => (e.kind === "move-remote" ? { ...e, at: 5 } : e));
    expect(world({}, { trashed, histories }, moveFirst).violations).toEqual([expect.stringContaining("is in the trash, but no device deleted")]);
  });
});
