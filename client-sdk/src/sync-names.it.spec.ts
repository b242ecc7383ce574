import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createAccount, syncDevice, type SyncDevice } from "@satchel/ops";

const { endpoints } = inject("cluster");
const devices: SyncDevice[] = [];
afterAll(async () => {
  for (const d of devices) await d.close();
});

const NFC = "caf\u00e9.txt";
const NFD = NFC.normalize("NFD");

async function pair() {
  const account = await createAccount(endpoints, "names");
  const a = await syncDevice(endpoints, account, "laptop");
  const b = await syncDevice(endpoints, account, "desktop");
  devices.push(a, b);
  const live = async () => (await a.client.list("/", true)).filter((e) => !e.isDeleted).map((e) => e.path).sort();
  const trashed = async () =>
    (await a.client.meta.listFolder({ path: "/", recursive: true, includeDeleted: true })).entries.filter((e) => e.isDeleted).map((e) => e.path);
  const both = async () => {
    await a.agent.syncNow();
    await b.agent.syncNow();
    await a.agent.syncNow();
  };
  return { a, b, live, trashed, both };
}

describe("names the server takes as one: case and Unicode form", () => {
  it("a rename that changes only case (a folder with files, and a file) is a move on every device: no delete, no add, history kept", async () => {
    const { a, b, live, trashed, both } = await pair();
    await mkdir(join(a.dir, "docs"));
    await writeFile(join(a.dir, "docs", "a.txt"), "a1\n");
    await writeFile(join(a.dir, "docs", "b.txt"), "b1\n");
    await both();
    await writeFile(join(b.dir, "docs", "a.txt"), "a2\n");
    await both();

    await rename(join(a.dir, "docs"), join(a.dir, "Docs"));
    await rename(join(a.dir, "Docs", "b.txt"), join(a.dir, "Docs", "B.txt"));
    await both();

    expect(await live()).toEqual(["/Docs", "/Docs/B.txt", "/Docs/a.txt"]);
    expect(await trashed()).toEqual([]);
    expect(a.events.filter((e) => e.kind === "move-remote").map((e) => [e.path, "to" in e ? e.to : ""])).toEqual([
      ["/docs", "/Docs"], ["/Docs/b.txt", "/Docs/B.txt"],
    ]);
    expect(a.events.some((e) => e.kind === "upload" && e.path.startsWith("/Docs"))).toBe(false);
    for (const d of [a, b]) {
      expect((await readdir(d.dir)).filter((n) => !n.startsWith("."))).toEqual(["Docs"]);
      expect((await readdir(join(d.dir, "Docs"))).sort()).toEqual(["B.txt", "a.txt"]);
      expect(await readFile(join(d.dir, "Docs", "a.txt"), "utf8")).toBe("a2\n");
    }
    expect((await a.client.meta.listRevisions({ path: "/Docs/a.txt" })).revisions.length).toBe(2);
  });

  it("a name written in NFD is the server's NFC name: it syncs as one file, edits of it are edits, and no twin appears", async () => {
    const { a, b, live, trashed, both } = await pair();
    await writeFile(join(a.dir, NFD), "v1\n");
    await both();
    expect(await live()).toEqual([`/${NFC}`]);
    expect(await readFile(join(b.dir, NFC), "utf8")).toBe("v1\n");
    // The device that wrote it keeps its spelling, and gets no NFC twin from the journal.
    expect(await readdir(a.dir)).toContain(NFD);
    expect(await readdir(a.dir)).not.toContain(NFC);

    await writeFile(join(a.dir, NFD), "v2 from a\n");
    await both();
    await writeFile(join(b.dir, NFC), "v3 from b\n");
    await both();
    expect(await live()).toEqual([`/${NFC}`]);
    expect((await a.client.meta.listRevisions({ path: `/${NFC}` })).revisions.length).toBe(3);
    expect(await readFile(join(a.dir, NFD), "utf8")).toBe("v3 from b\n");
    expect((await readdir(a.dir)).filter((n) => !n.startsWith("."))).toEqual([NFD]);
    expect(await trashed()).toEqual([]);
  });

  it("an NFD name keeps its spelling through a folder rename another device made, so the next move of it (out of that folder) applies too", async () => {
    const { a, b, live, both } = await pair();
    await mkdir(join(a.dir, "d", "sub"), { recursive: true });
    await writeFile(join(a.dir, "d", "sub", NFD), "nfd\n");
    await both();
    // While a is away, b renames the folder and then moves the file out of it.
    await rename(join(b.dir, "d", "sub"), join(b.dir, "d", "m"));
    await b.agent.syncNow();
    await rename(join(b.dir, "d", "m", NFC), join(b.dir, "d", NFC));
    await b.agent.syncNow();
    await a.agent.syncNow();
    await a.agent.syncNow();
    expect(await live()).toEqual(["/d", `/d/${NFC}`, "/d/m"]);
    expect(await readdir(join(a.dir, "d", "m"))).toEqual([]);
    expect((await readdir(join(a.dir, "d"))).map((n) => n.normalize("NFC")).sort()).toEqual([NFC, "m"]);
    expect(await readFile(join(a.dir, "d", (await readdir(join(a.dir, "d"))).find((n) => n !== "m")!), "utf8")).toBe("nfd\n");
  });

  it("two local names the server would take as one: the synced one keeps its name, the other becomes a case conflict and syncs beside it", async () => {
    const { a, b, live, both } = await pair();
    await writeFile(join(a.dir, "notes.txt"), "synced\n");
    await both();
    await writeFile(join(a.dir, "NOTES.txt"), "made on a case-sensitive disk\n");
    await both();
    expect(await live()).toEqual(["/NOTES (case conflict).txt", "/notes.txt"]);
    for (const d of [a, b]) {
      expect(await readFile(join(d.dir, "notes.txt"), "utf8")).toBe("synced\n");
      expect(await readFile(join(d.dir, "NOTES (case conflict).txt"), "utf8")).toBe("made on a case-sensitive disk\n");
      expect(existsSync(join(d.dir, "NOTES.txt"))).toBe(false);
    }
  });

  it("a folder made on a device in another case than the server's one takes the server's spelling there: one name on every device", async () => {
    const { a, b, live, both } = await pair();
    await mkdir(join(a.dir, "Docs"));
    await writeFile(join(a.dir, "Docs", "x.txt"), "from a\n");
    await a.agent.syncNow();
    // b's user makes "docs" before b ever saw the server's "Docs".
    await mkdir(join(b.dir, "docs", "sub"), { recursive: true });
    await writeFile(join(b.dir, "docs", "sub", "y.txt"), "from b\n");
    await both();
    expect(await live()).toEqual(["/Docs", "/Docs/sub", "/Docs/sub/y.txt", "/Docs/x.txt"]);
    for (const d of [a, b]) {
      expect((await readdir(d.dir)).filter((n) => !n.startsWith(".")), d.name).toEqual(["Docs"]);
      expect((await readdir(join(d.dir, "Docs"))).sort(), d.name).toEqual(["sub", "x.txt"]);
      expect(await readFile(join(d.dir, "Docs", "sub", "y.txt"), "utf8")).toBe("from b\n");
    }
    expect(b.events.some((e) => e.kind === "conflict")).toBe(false);
  });

  it("a file uploaded into a folder by another spelling lands in the folder as the server spells it", async () => {
    const { a, live } = await pair();
    await a.client.meta.createFolder({ path: "/Reports" });
    const local = join(a.dir, "..", `names-${Date.now()}.txt`);
    await writeFile(local, "q1\n");
    const { file } = await a.client.uploadAs(local, "/REPORTS/q1.txt", 0n, `names-${Date.now()}`);
    expect(file.path).toBe("/Reports/q1.txt");
    expect(await live()).toEqual(["/Reports", "/Reports/q1.txt"]);
    await a.client.meta.move({ fromPath: "/Reports/q1.txt", toPath: "/reports/Q1.txt" });
    expect(await live()).toEqual(["/Reports", "/Reports/Q1.txt"]);
  });
});
