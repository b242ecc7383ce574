import { describe, expect, it } from "vitest";
import { checkSimulation, eventsAbout, FOLDER, type DeviceView, type LoggedEvent, type ServerView, type SimRecord, type UserWrite } from "./checker.js";

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

  describe("judging what the users did", () => {
    const write = (device: string, path: string, key: string, at: number, more: Partial<UserWrite> = {}): UserWrite => ({ device, path, key, at, step: at, ...more });
    const record = (r: Partial<SimRecord>): SimRecord => ({ writes: [], deletes: [], kills: [], revocations: [], ...r });
    const oneFile = { live: new Map([["/a.txt", "k1"]]), trashed: [], histories: [{ path: "/a.txt", revisions: [rev(1, "k1")] }] };
    const judge = (server: ServerView, r: SimRecord, eventsA: LoggedEvent[] = [upload("/a.txt", 1, 0, "k1")], devices?: DeviceView[]) =>
      checkSimulation(devices ?? [device("A", Object.fromEntries(server.live), eventsA)], server, r).violations;

    it("a write that reached the server, live or kept as a version, is accounted for", () => {
      expect(judge(oneFile, record({ writes: [write("A", "/a.txt", "k1", 1)] }))).toEqual([]);
    });

    it("reports a write that never reached the server, naming the device, the path and the step: a lost edit", () => {
      const r = record({ writes: [write("A", "/a.txt", "k1", 1), write("B", "/a.txt", "kB", 5, { replaced: "k1" })] });
      expect(judge(oneFile, r)).toEqual([expect.stringMatching(/^lost write: B's write of \/a\.txt at step 5 \(content kB\) never reached the server/)]);
    });

    it("a conflict's winner that never came down is named as such; missing anything else is a plain difference", () => {
      const copy = "/a (B's conflicted copy 2026-12-06).txt";
      const server: ServerView = { live: new Map([["/a.txt", "k1"], [copy, "kB"]]), trashed: [], histories: [{ path: "/a.txt", revisions: [rev(1, "k1")] }, { path: copy, revisions: [rev(2, "kB")] }] };
      const events: LoggedEvent[] = [upload(copy, 2, 1, "kB"), { kind: "conflict", path: "/a.txt", to: copy }];
      const r = record({ writes: [write("A", "/a.txt", "k1", 1), write("B", "/a.txt", "kB", 5, { replaced: "k1" })] });
      const stuck = checkSimulation([device("A", { "/a.txt": "k1", [copy]: "kB" }, [upload("/a.txt", 1, 0, "k1")]), device("B", { [copy]: "kB" }, events)], server, r);
      expect(stuck.violations).toEqual(["B never got the winner of a conflict it lost: missing /a.txt"]);
      // Missing anything else is a violation as before.
      const other = checkSimulation([device("A", { "/a.txt": "k1", [copy]: "kB" }, [upload("/a.txt", 1, 0, "k1")]), device("B", { "/a.txt": "k1" }, events)], server, r);
      expect(other.violations).toEqual([expect.stringContaining(`B differs from the server: missing ${copy}`)]);
    });

    it("a write replaced by the same user's later write before it was uploaded is not lost", () => {
      const r = record({ writes: [write("A", "/a.txt", "k0", 1), write("A", "/a.txt", "k1", 2, { replaced: "k0" })] });
      expect(judge(oneFile, r)).toEqual([]);
    });

    it("a write removed by a delete that named it is not lost, but a delete of something else does not explain it", () => {
      const writes = [write("A", "/a.txt", "k1", 1), write("A", "/b.txt", "kb", 2)];
      expect(judge(oneFile, record({ writes, deletes: [{ device: "A", path: "/b.txt", keys: ["kb"], at: 3, step: 3 }] }))).toEqual([]);
      expect(judge(oneFile, record({ writes, deletes: [{ device: "A", path: "/c.txt", keys: ["kc"], at: 3, step: 3 }] })))
        .toEqual([expect.stringContaining("lost write: A's write of /b.txt at step 2")]);
    });

    it("a member's unsent write goes with the membership when they leave or are removed after it, not before", () => {
      const writes = [write("A", "/a.txt", "k1", 1), write("C", "/S/m.txt", "km", 5)];
      expect(judge(oneFile, record({ writes, revocations: [{ devices: ["C"], folder: "/S", at: 6 }] }))).toEqual([]);
      expect(judge(oneFile, record({ writes, revocations: [{ devices: ["C"], folder: "/S", at: 4 }] }))).toEqual([expect.stringContaining("lost write: C's write of /S/m.txt")]);
    });

    it("reports a viewer's write that reached the folder it may only view; set aside in the viewer's own tree, or gone, is as it should be", () => {
      const server: ServerView = {
        live: new Map([["/S", FOLDER], ["/S/a.txt", "k1"]]), trashed: [], sharedFolders: ["/S", "/~member"],
        liveOf: { member: new Map([["/S", FOLDER], ["/S/a.txt", "k1"], ["/S (view only conflicts)", FOLDER], ["/S (view only conflicts)/a.txt", "kv"]]) },
        histories: [{ path: "/S/a.txt", revisions: [rev(1, "k0"), rev(2, "k1")] }, { path: "/~member/S (view only conflicts)/a.txt", revisions: [rev(1, "kv")] }],
      };
      const owner = [write("A", "/S/a.txt", "k0", 1), write("A", "/S/a.txt", "k1", 2, { replaced: "k0" })];
      const events = [upload("/S/a.txt", 1, 0, "k0"), upload("/S/a.txt", 2, 1, "k1")];
      const viewer = write("C", "/S/a.txt", "kv", 3, { viewOnly: "/S", replaced: "k1" });
      const check = (w: UserWrite, others = owner) => checkSimulation([device("A", { "/S": FOLDER, "/S/a.txt": "k1" }, events)], server, record({ writes: [...others, w] })).violations;
      expect(check(viewer)).toEqual([]);
      expect(check({ ...viewer, key: "gone" })).toEqual([]);
      // Bytes only the viewer wrote.
      expect(check({ ...viewer, key: "k0" }, owner.slice(1))).toEqual([expect.stringContaining("C's write of /S/a.txt at step 3 (content k0), made as a viewer, reached the server in /S")]);
      // The same bytes written by an owner's device too (each cut one version to half): the owner's reached it.
      expect(check({ ...viewer, key: "k0" })).toEqual([]);
    });

    it("a name every agent ignores stays on the server only; one that is not live any more was deleted by an agent", () => {
      const server: ServerView = { ...oneFile, live: new Map([["/a.txt", "k1"], ["/o1.tmp", "ko"]]) };
      const other = write("other", "/o1.tmp", "ko", 2, { ignoredName: true });
      // The device does not hold it, and must not.
      expect(judge(server, record({ writes: [write("A", "/a.txt", "k1", 1), other] }), undefined, [device("A", { "/a.txt": "k1" }, [upload("/a.txt", 1, 0, "k1")])])).toEqual([]);
      expect(judge(oneFile, record({ writes: [write("A", "/a.txt", "k1", 1), other] }))).toEqual([expect.stringContaining("/o1.tmp at step 2 (content ko), a name every agent ignores, is not live")]);
    });

    it("reports a conflicted copy holding content nobody wrote", () => {
      const copy = "/a (B's conflicted copy 2026-12-06).txt";
      const server: ServerView = { live: new Map([["/a.txt", "k1"], [copy, "kx"]]), trashed: [], histories: [{ path: "/a.txt", revisions: [rev(1, "k1")] }, { path: copy, revisions: [rev(2, "kx")] }] };
      const writes = [write("A", "/a.txt", "k1", 1)];
      expect(judge(server, record({ writes }))).toEqual([expect.stringContaining(`conflicted copy ${copy} holds content no user wrote`)]);
      expect(judge(server, record({ writes: [...writes, write("B", "/a.txt", "kx", 2)] }))).toEqual([]);
    });

    it("reports a conflicted copy that does not sit beside the path it conflicted with", () => {
      const server: ServerView = { live: new Map([["/d", FOLDER], ["/d/a.txt", "k1"]]), trashed: [], histories: [{ path: "/d/a.txt", revisions: [rev(1, "k1")] }] };
      const r = record({ writes: [write("A", "/d/a.txt", "k1", 1)] });
      const beside: LoggedEvent = { kind: "conflict", path: "/d/a.txt", to: "/d/a (A's conflicted copy 2026-12-06) (2).txt" };
      const elsewhere: LoggedEvent = { kind: "conflict", path: "/d/a.txt", to: "/e/a (A's conflicted copy 2026-12-06).txt" };
      const renamed: LoggedEvent = { kind: "conflict", path: "/d/a.txt", to: "/d/b (A's conflicted copy 2026-12-06).txt" };
      const events = (e: LoggedEvent) => [upload("/d/a.txt", 1, 0, "k1"), e];
      expect(judge(server, r, events(beside))).toEqual([]);
      expect(judge(server, r, events(elsewhere))).toEqual([expect.stringContaining("does not sit beside /d/a.txt")]);
      expect(judge(server, r, events(renamed))).toEqual([expect.stringContaining("does not sit beside /d/a.txt")]);
      // A conflicted copy a viewer's agent sets aside elsewhere is no new conflicted copy of it.
      const setAside: LoggedEvent = { kind: "conflict", path: "/d/a (A's conflicted copy 2026-12-06).txt", to: "/d (view only conflicts)/a (A's conflicted copy 2026-12-06).txt" };
      expect(judge(server, r, events(setAside))).toEqual([]);
    });

    it("an edit no agent logged is explained only by a SIGKILL of the writer's agent after the write", () => {
      const server: ServerView = { live: new Map([["/a.txt", "k2"]]), trashed: [], histories: [{ path: "/a.txt", revisions: [rev(1, "k1"), rev(2, "k2")] }] };
      const writes = [write("A", "/a.txt", "k1", 1), write("B", "/a.txt", "k2", 5, { replaced: "k1" })];
      expect(judge(server, record({ writes, kills: [{ device: "B", at: 6 }] }))).toEqual([]);
      expect(judge(server, record({ writes, kills: [{ device: "B", at: 4 }, { device: "A", at: 9 }] })))
        .toEqual([expect.stringContaining("that no agent logged, though B's agent was not killed after that write")]);
      expect(judge(server, record({ writes: writes.slice(0, 1), kills: [{ device: "B", at: 6 }] })))
        .toEqual([expect.stringContaining("content no user wrote (k2) and no agent logged")]);
    });

    it("compares revisions only within one namespace: an edit in the shared folder does not explain a root file's replacement", () => {
      const server: ServerView = {
        live: new Map([["/a.txt", "k2"], ["/S", FOLDER], ["/S/b.txt", "k3"]]), trashed: [], sharedFolders: ["/S"],
        histories: [{ path: "/a.txt", revisions: [rev(1, "k1"), rev(2, "k2")] }, { path: "/S/b.txt", revisions: [rev(1, "kb"), rev(3, "k3")] }],
      };
      const events = [upload("/a.txt", 1, 0, "k1"), upload("/a.txt", 2, 0, "k2"), upload("/S/b.txt", 1, 0, "kb"), upload("/S/b.txt", 3, 1, "k3")];
      expect(checkSimulation([device("A", Object.fromEntries(server.live), events)], server).violations)
        .toEqual([expect.stringContaining("/a.txt r1 (uploaded by A) was replaced at /a.txt by r2")]);
    });

    it("a member's device holds the member's tree, not the owner's", () => {
      const server: ServerView = { ...oneFile, live: new Map([["/a.txt", "k1"], ["/S", FOLDER]]), liveOf: { M: new Map([["/S", FOLDER]]) } };
      const devices = [device("A", { "/a.txt": "k1", "/S": FOLDER }, [upload("/a.txt", 1, 0, "k1")]), { ...device("C", { "/S": FOLDER }), account: "M" }];
      expect(checkSimulation(devices, server).violations).toEqual([]);
      expect(checkSimulation([devices[0], { ...devices[1], tree: new Map() }], server).violations).toEqual([expect.stringContaining("C differs from the server: missing /S")]);
    });
  });
});

describe("the events printed for a failed seed", () => {
  const ev = (kind: string, path: string, to?: string): LoggedEvent => ({ kind, path, ...(to ? { to } : {}) });
  it("are those about a path a violation names, a folder above it or something under it", () => {
    const events = [ev("upload", "/a.txt"), ev("move-local", "/m3/d1", "/m3/m5"), ev("delete-local", "/m3"), ev("download", "/m3/m5/x.txt"), ev("upload", "/m30/y")];
    expect(eventsAbout(["seed 25: A differs from the server: missing /m3/m5"], events)).toEqual([events[1], events[2], events[3]]);
    expect(eventsAbout(["seed 25: A differs from the server: missing /m3/m5"], events, 2)).toEqual([events[2], events[3]]);
    expect(eventsAbout(["seed 1: the simulation failed: timeout"], events)).toEqual([]);
  });
});
