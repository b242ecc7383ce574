import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
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

