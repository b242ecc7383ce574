import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { recordFailure } from "./problems.js";
import { STATE_VERSION, SyncState } from "./state.js";

/** A state file as version 1 agents wrote it (before problems were kept): golden bytes, never regenerated. */
const VERSION_1 = '{"version":1,"cursors":{"12":"40","13":"7"},"files":{"/a.txt":{"revision":"5","size":3,"mtimeMs":1717171717171.5,' +
  '"blocks":[["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",3]]},"/d/e.bin":{"revision":"9","size":0,"mtimeMs":1717171717000,' +
  '"blocks":[]}},"folders":["/d"],"lastSyncAt":1717171718000}';

/** A state file as version 2 agents wrote it (problems, no follow-ups): golden bytes, never regenerated. */
const VERSION_2 = '{"version":2,"cursors":{"12":"41"},"files":{"/a.txt":{"revision":"6","size":3,"mtimeMs":1717171717171.5,"ino":4242,"cursor":"41",' +
  '"blocks":[["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",3]]}},"folders":["/d"],"lastSyncAt":1717171718000,' +
  '"problems":{"/d/x.bin":{"direction":"download","code":"data_loss","message":"block lost","attempts":2,"firstFailedAt":1717171710000,' +
  '"lastFailedAt":1717171715000,"nextRetryAt":1717171725000,"revision":"3"}}}';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});
const stateFile = async () => join((dir = await mkdtemp(join(tmpdir(), "satchel-state-"))), "state.json");

describe("sync state file", () => {
  it("a version 1 state file still loads, with no problems, and is written back as the current version", async () => {
    const path = await stateFile();
    await writeFile(path, VERSION_1);
    const state = await SyncState.open(path);
    expect(state.cursor(12n)).toBe(40n);
    expect(state.cursor(13n)).toBe(7n);
    expect(state.file("/a.txt")).toEqual({ revision: "5", size: 3, mtimeMs: 1717171717171.5, blocks: [["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3]] });
    expect(state.file("/d/e.bin")?.revision).toBe("9");
    expect([...state.folders]).toEqual(["/d"]);
    expect(state.lastSyncAt).toBe(1717171718000);
    expect(state.problems).toEqual([]);

    await state.save();
    const written = JSON.parse(await readFile(path, "utf8"));
    expect(written.version).toBe(STATE_VERSION);
    expect(written.problems).toEqual({});
    expect(written.cursors).toEqual({ "12": "40", "13": "7" });
  });

  it("a version 2 state file still loads, with its problems and no follow-ups, and is written back as the current version", async () => {
    const path = await stateFile();
    await writeFile(path, VERSION_2);
    const state = await SyncState.open(path);
    expect(state.cursor(12n)).toBe(41n);
    expect(state.file("/a.txt")?.ino).toBe(4242);
    expect(state.problem("/d/x.bin")?.code).toBe("data_loss");
    expect(state.followUps).toEqual({ movedFrom: [], movedTo: [], refetch: [], relist: [] });
    await state.save();
    const written = JSON.parse(await readFile(path, "utf8"));
    expect(written.version).toBe(STATE_VERSION);
    expect(written.followUps).toEqual({ movedFrom: [], movedTo: [], refetch: [], relist: [] });
  });

  it("follow-ups are kept with the cursors until done, and only the done ones go", async () => {
    const path = await stateFile();
    const state = await SyncState.open(path);
    state.setCursor(1n, 9n);
    state.followUp("movedFrom", "/X");
    state.followUp("movedTo", "/Y");
    state.followUp("movedTo", "/Y");
    await state.save();
    // An agent killed here finds them again.
    const reopened = await SyncState.open(path);
    const pending = reopened.followUps;
    expect(pending).toEqual({ movedFrom: ["/X"], movedTo: ["/Y"], refetch: [], relist: [] });
    reopened.followUp("refetch", "/a.txt");
    reopened.doneFollowUps(pending);
    expect(reopened.followUps).toEqual({ movedFrom: [], movedTo: [], refetch: ["/a.txt"], relist: [] });
  });

  it("a version 3 state written before folders to relist loads with none, and keeps one until it is done", async () => {
    const path = await stateFile();
    await writeFile(path, JSON.stringify({ version: 3, cursors: { "1": "5" }, files: {}, folders: ["/d"], lastSyncAt: 0, problems: {}, followUps: { movedFrom: [], movedTo: ["/Y"], refetch: [] } }));
    const state = await SyncState.open(path);
    expect(state.followUps).toEqual({ movedFrom: [], movedTo: ["/Y"], refetch: [], relist: [] });
    state.followUp("relist", "/d");
    await state.save();
    const reopened = await SyncState.open(path);
    expect(reopened.followUps.relist).toEqual(["/d"]);
    reopened.doneFollowUps(reopened.followUps);
    expect(reopened.followUps).toEqual({ movedFrom: [], movedTo: [], refetch: [], relist: [] });
  });

  it("follow-ups taken but not done are kept again, beside any added meanwhile, each once", async () => {
    const state = await SyncState.open(await stateFile());
    state.followUp("refetch", "/a.txt");
    state.followUp("relist", "/d");
    const taken = state.followUps;
    state.doneFollowUps(taken);
    state.followUp("refetch", "/b.txt");
    state.followUp("refetch", "/a.txt");
    state.keepFollowUps(taken);
    expect(state.followUps).toEqual({ movedFrom: [], movedTo: [], refetch: ["/b.txt", "/a.txt"], relist: ["/d"] });
  });

  it("problems survive a save and a reopen, next to everything else", async () => {
    const path = await stateFile();
    const state = await SyncState.open(path);
    state.setCursor(3n, 99n);
    state.setFile("/ok.txt", { revision: "2", size: 1, mtimeMs: 10, blocks: [["00", 1]] });
    const down = recordFailure(undefined, { direction: "download", code: "data_loss", message: "block 3f cannot be read", revision: "17" }, 1_000);
    const up = recordFailure(
      recordFailure(undefined, { direction: "upload", code: "resource_exhausted", message: "over quota", local: { size: 5, mtimeMs: 6 } }, 2_000),
      { direction: "upload", code: "resource_exhausted", message: "over quota", local: { size: 5, mtimeMs: 6 } }, 9_000,
    );
    state.setProblem("/bad.bin", down);
    state.setProblem("/big.iso", up);
    state.setProblem("/fixed.txt", down);
    state.setProblem("/fixed.txt", undefined);
    await state.save();

    const again = await SyncState.open(path);
    expect(again.cursor(3n)).toBe(99n);
    expect(again.file("/ok.txt")?.revision).toBe("2");
    expect(Object.fromEntries(again.problems)).toEqual({ "/bad.bin": down, "/big.iso": up });
    expect(again.problem("/big.iso")).toMatchObject({ attempts: 2, firstFailedAt: 2_000, lastFailedAt: 9_000, nextRetryAt: 19_000 });
    expect(again.problem("/fixed.txt")).toBeUndefined();
    expect(await readdir(dir!), "no temporary file left behind").toEqual(["state.json"]);
  });

  it("refuses a state file from a newer agent rather than guess at it", async () => {
    const path = await stateFile();
    await writeFile(path, JSON.stringify({ version: STATE_VERSION + 1, cursors: {}, files: {}, folders: [], lastSyncAt: 0, problems: {} }));
    await expect(SyncState.open(path)).rejects.toThrow(/unknown sync state version/);
  });

  it("a change the device did not apply is remembered at its earliest cursor, follows a move, survives a save, and is forgotten once applied", async () => {
    const path = await stateFile();
    const state = await SyncState.open(path);
    state.notApplied("/X/new.bin", 30n);
    state.notApplied("/X/new.bin", 25n);
    state.notApplied("/X/new.bin", 40n);
    state.notApplied("/Y/other.tmp", 12n);
    state.moveUnapplied("/X", "/Z");
    await state.save();
    const again = await SyncState.open(path);
    expect(again.unapplied.sort()).toEqual([["/Y/other.tmp", 12n], ["/Z/new.bin", 25n]]);
    again.applied("/Z");
    expect(again.unapplied).toEqual([["/Y/other.tmp", 12n]]);
  });

  it("a change not applied follows a move and is forgotten by a delete of its folder in any spelling (the server folds case)", async () => {
    const state = await SyncState.open(await stateFile());
    state.notApplied("/S/d0/o20.part", 9n);
    state.notApplied("/S/d00/other.tmp", 11n);
    state.moveUnapplied("/S/D0", "/S/m0");
    expect(state.unapplied.sort()).toEqual([["/S/d00/other.tmp", 11n], ["/S/m0/o20.part", 9n]]);
    state.applied("/s/M0");
    expect(state.unapplied).toEqual([["/S/d00/other.tmp", 11n]]);
  });

  it("an upload sent again is the same request; another version, parent, file, path or device is another", async () => {
    const path = await stateFile();
    const state = await SyncState.open(path);
    const local = { size: 3, mtimeMs: 1717171717171.5, ino: 42 };
    const blocks = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    const id = state.uploadRequestId("/a.txt", 5n, local, blocks);
    expect(id.length).toBeLessThanOrEqual(64);
    await state.save();
    expect((await SyncState.open(path)).uploadRequestId("/a.txt", 5n, local, blocks)).toBe(id);
    const others = [
      state.uploadRequestId("/a.txt", 5n, local, [blocks[0]]),
      state.uploadRequestId("/a.txt", 6n, local, blocks),
      state.uploadRequestId("/a.txt", 5n, { ...local, mtimeMs: local.mtimeMs + 1 }, blocks),
      state.uploadRequestId("/b.txt", 5n, local, blocks),
      (await SyncState.open(`${path}.another-device`)).uploadRequestId("/a.txt", 5n, local, blocks),
    ];
    expect(new Set([id, ...others]).size).toBe(6);
  });
});
