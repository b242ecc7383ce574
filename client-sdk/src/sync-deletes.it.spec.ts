import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createAccount, syncDevice, type SyncDevice } from "@satchel/ops";

const { endpoints } = inject("cluster");
const devices: SyncDevice[] = [];
afterAll(async () => {
  for (const d of devices) await d.close();
});

async function pair() {
  const account = await createAccount(endpoints, "deletes");
  const a = await syncDevice(endpoints, account, "laptop");
  const b = await syncDevice(endpoints, account, "desktop");
  devices.push(a, b);
  const live = async (path: string) => (await a.client.list(path, true)).filter((e) => !e.isDeleted).map((e) => e.path).sort();
  return { a, b, live };
}

describe("no device deletes what it has not seen", () => {
  it("a folder deleted on one device while another adds and edits files in it keeps the other device's work, on every device", async () => {
    const { a, b, live } = await pair();
    await mkdir(join(a.dir, "X"));
    for (const f of ["f1.txt", "f2.txt", "f3.txt"]) await writeFile(join(a.dir, "X", f), `${f}\n`);
    await a.agent.syncNow();
    await b.agent.syncNow();
    expect(existsSync(join(b.dir, "X", "f3.txt"))).toBe(true);

    // B edits and adds inside X and syncs; A, which has not seen that, deletes X.
    await appendFile(join(b.dir, "X", "f1.txt"), "a line from B\n");
    const fresh = randomBytes(3000);
    await writeFile(join(b.dir, "X", "new.bin"), fresh);
    await b.agent.syncNow();
    await rm(join(a.dir, "X"), { recursive: true });
    await a.agent.syncNow();
    await b.agent.syncNow();
    await a.agent.syncNow();

    // What A had seen is gone; what it had not survives in the live tree and on both devices.
    expect(await live("/X")).toEqual(["/X/f1.txt", "/X/new.bin"]);
    for (const d of [a, b]) {
      expect(await readFile(join(d.dir, "X", "f1.txt"), "utf8")).toBe("f1.txt\na line from B\n");
      expect((await readFile(join(d.dir, "X", "new.bin"))).equals(fresh)).toBe(true);
      expect(existsSync(join(d.dir, "X", "f2.txt"))).toBe(false);
      expect(existsSync(join(d.dir, "X", "f3.txt"))).toBe(false);
    }
  });

  it("a folder nobody touched since goes entirely, on every device", async () => {
    const { a, b, live } = await pair();
    await mkdir(join(a.dir, "Old", "deep"), { recursive: true });
    await writeFile(join(a.dir, "Old", "deep", "x.txt"), "x");
    await a.agent.syncNow();
    await b.agent.syncNow();
    await rm(join(b.dir, "Old"), { recursive: true });
    await b.agent.syncNow();
    await a.agent.syncNow();
    expect(await live("/")).not.toContain("/Old");
    expect(existsSync(join(a.dir, "Old"))).toBe(false);
  });
});

describe("many files deleted at once", () => {
  it("go to the server in a few CommitBatch calls, not one call each; one changed elsewhere meanwhile comes back", async () => {
    const { a, b, live } = await pair();
    await mkdir(join(a.dir, "Many"));
    for (let i = 0; i < 40; i++) await writeFile(join(a.dir, "Many", `f${i}.txt`), `file ${i}\n`);
    await writeFile(join(a.dir, "keep.txt"), "stays\n");
    await a.agent.syncNow();
    await b.agent.syncNow();
    // B edits one of them first: A's delete of it names the revision A saw, so that one survives.
    await appendFile(join(b.dir, "Many", "f7.txt"), "edited on B\n");
    await b.agent.syncNow();

    const commitBatch = a.client.meta.commitBatch.bind(a.client.meta);
    const deletesPerCall: number[] = [];
    Object.assign(a.client.meta, {
      commitBatch: async (...args: Parameters<typeof commitBatch>) => {
        deletesPerCall.push(args[0].changes?.filter((c) => c.change?.case === "delete").length ?? 0);
        return commitBatch(...args);
      },
    });
    for (let i = 0; i < 40; i++) await rm(join(a.dir, "Many", `f${i}.txt`));
    await a.agent.syncNow();
    await a.agent.syncNow();
    await b.agent.syncNow();

    expect(await live("/")).toEqual(["/Many", "/Many/f7.txt", "/keep.txt"]);
    expect(await readFile(join(a.dir, "Many", "f7.txt"), "utf8")).toBe("file 7\nedited on B\n");
    // 39 or 40 deletes sent (f7's is refused, or not sent when A saw B's edit first), in a few calls.
    const deletes = deletesPerCall.reduce((n, d) => n + d, 0);
    expect(deletes).toBeGreaterThanOrEqual(39);
    expect(deletesPerCall.filter((d) => d > 0).length).toBeLessThan(deletes / 2);
    expect(existsSync(join(b.dir, "Many", "f3.txt"))).toBe(false);
  });
});

describe("a rename is a move", () => {
  const setUp = async () => {
    const { a, b, live } = await pair();
    await mkdir(join(a.dir, "X"));
    for (const f of ["f1.txt", "f2.txt", "f3.txt"]) await writeFile(join(a.dir, "X", f), `${f}\n`);
    await a.agent.syncNow();
    await b.agent.syncNow();
    const trashed = async () =>
      (await a.client.meta.listFolder({ path: "/", recursive: true, includeDeleted: true })).entries.filter((e) => e.isDeleted).map((e) => e.path).sort();
    return { a, b, live, trashed };
  };
  const expectBoth = async (a: SyncDevice, b: SyncDevice, path: string, content: string | Buffer) => {
    for (const d of [a, b]) {
      const got = await readFile(join(d.dir, ...path.split("/").filter(Boolean)));
      if (typeof content === "string") expect(got.toString("utf8"), `${d.name}:${path}`).toBe(content);
      else expect(got.equals(content), `${d.name}:${path}`).toBe(true);
    }
  };

  it("the issue's case: B edits and adds inside X, then A (not having seen that) renames X to Y: B's work follows to Y, nothing goes to the trash", async () => {
    const { a, b, live, trashed } = await setUp();
    await appendFile(join(b.dir, "X", "f1.txt"), "a line from B\n");
    const fresh = randomBytes(3000);
    await writeFile(join(b.dir, "X", "new.bin"), fresh);
    await b.agent.syncNow();
    await rename(join(a.dir, "X"), join(a.dir, "Y"));
    await a.agent.syncNow();
    expect(a.events.some((e) => e.kind === "move-remote" && e.path === "/X" && e.to === "/Y")).toBe(true);
    await b.agent.syncNow();
    await a.agent.syncNow();
    expect(await live("/")).toEqual(["/Y", "/Y/f1.txt", "/Y/f2.txt", "/Y/f3.txt", "/Y/new.bin"]);
    expect(await trashed()).toEqual([]);
    await expectBoth(a, b, "/Y/f1.txt", "f1.txt\na line from B\n");
    await expectBoth(a, b, "/Y/new.bin", fresh);
    for (const d of [a, b]) expect(existsSync(join(d.dir, "X"))).toBe(false);
  });

  it("the other order: A renames X to Y first, then B (not having seen it) edits and adds at X: nothing is lost and both devices agree", async () => {
    const { a, b, live, trashed } = await setUp();
    await rename(join(a.dir, "X"), join(a.dir, "Y"));
    await a.agent.syncNow();
    await appendFile(join(b.dir, "X", "f1.txt"), "a line from B\n");
    const fresh = randomBytes(3000);
    await writeFile(join(b.dir, "X", "new.bin"), fresh);
    await b.agent.syncNow();
    await a.agent.syncNow();
    await b.agent.syncNow();
    const tree = await live("/");
    // The rename won; B's edit of a file it had not seen moved is kept beside it as a conflicted
    // copy, and B's new file stays where B put it.
    expect(tree).toEqual(expect.arrayContaining(["/Y/f1.txt", "/Y/f2.txt", "/Y/f3.txt", "/X/new.bin"]));
    const copy = tree.find((p) => p.startsWith("/X/f1 (") && p.includes("conflicted copy"));
    expect(copy, tree.join(", ")).toBeDefined();
    expect(await trashed()).toEqual([]);
    for (const p of tree.filter((x) => x.includes("."))) await expectBoth(a, b, p, await readFile(join(a.dir, ...p.split("/").filter(Boolean))));
    await expectBoth(a, b, copy!, "f1.txt\na line from B\n");
    await expectBoth(a, b, "/X/new.bin", fresh);
  });

  it("a single file renamed on one device is a move on the server: its history comes with it", async () => {
    const { a, b, live } = await setUp();
    await rename(join(a.dir, "X", "f2.txt"), join(a.dir, "X", "renamed.txt"));
    await a.agent.syncNow();
    await b.agent.syncNow();
    expect(await live("/X")).toEqual(["/X/f1.txt", "/X/f3.txt", "/X/renamed.txt"]);
    expect(a.events.some((e) => e.kind === "move-remote" && e.to === "/X/renamed.txt")).toBe(true);
    expect((await a.client.meta.listRevisions({ path: "/X/renamed.txt" })).revisions.length).toBeGreaterThanOrEqual(1);
    await expectBoth(a, b, "/X/renamed.txt", "f2.txt\n");
    expect(existsSync(join(b.dir, "X", "f2.txt"))).toBe(false);
  });
});
