import { execFileSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, describe, expect, inject, it } from "vitest";
import { cliEnv, createAccount, runCli, syncDevice, type SyncDevice, type TestAccount } from "@satchel/ops";
import { Role } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";

const { endpoints } = inject("cluster");
const devices: SyncDevice[] = [];
afterAll(async () => {
  for (const d of devices) await d.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function device(account: TestAccount, name: string, opts: Parameters<typeof syncDevice>[3] = {}): Promise<SyncDevice> {
  const d = await syncDevice(endpoints, account, name, opts);
  devices.push(d);
  return d;
}

/** Runs `before` (a user's action racing the agent) ahead of the first call of `target[method]`; says whether it ran. */
function beforeFirstCall<T extends object>(target: T, method: keyof T & string, before: () => Promise<unknown>): () => boolean {
  const original = (target[method] as (...args: unknown[]) => Promise<unknown>).bind(target);
  let ran = false;
  Object.assign(target, {
    [method]: async (...args: unknown[]) => {
      if (!ran) {
        ran = true;
        await before();
      }
      return original(...args);
    },
  });
  return () => ran;
}

/**
 * Runs `after` (a user's write racing the agent) just after each call of `target[method]` has done
 * its work, before the agent sees the answer; the function returned puts the method back.
 */
function afterCalls<T extends object>(target: T, method: keyof T & string, after: (args: unknown[]) => Promise<unknown>): () => void {
  const original = target[method];
  const bound = (original as (...args: unknown[]) => Promise<unknown>).bind(target);
  Object.assign(target, {
    [method]: async (...args: unknown[]) => {
      const answer = await bound(...args);
      await sleep(5);
      await after(args);
      return answer;
    },
  });
  return () => Object.assign(target, { [method]: original });
}

/** A laptop and a desktop of a new account, both holding `file` ("v1"), synced from the laptop. */
async function twoDevicesWith(name: string, file: string): Promise<{ a: SyncDevice; b: SyncDevice }> {
  const account = await createAccount(endpoints, name);
  const a = await device(account, "laptop");
  const b = await device(account, "desktop");
  await writeFile(join(a.dir, file), "v1\n");
  await a.agent.syncNow();
  await b.agent.syncNow();
  return { a, b };
}

/**
 * A laptop and a desktop of a new account, both holding /Work/plan.txt and /Work/Sub, and
 * /Work/Sub/scratch.tmp (a name the agents ignore) put there by another client: the laptop has
 * taken the journal past it without applying it.
 */
async function laptopWithIgnoredIn(name: string): Promise<{ a: SyncDevice; b: SyncDevice }> {
  const account = await createAccount(endpoints, name);
  const a = await device(account, "laptop");
  const b = await device(account, "desktop");
  await mkdir(join(a.dir, "Work", "Sub"), { recursive: true });
  await writeFile(join(a.dir, "Work", "plan.txt"), "plan\n");
  await a.agent.syncNow();
  await b.agent.syncNow();
  await writeFile(join(b.dir, "scratch.tmp"), "a script's scratch file\n");
  await b.client.upload(join(b.dir, "scratch.tmp"), "/Work/Sub/scratch.tmp");
  await a.agent.syncNow();
  return { a, b };
}

const live = async (d: SyncDevice, path: string) => (await d.client.list(path, true)).filter((e) => !e.isDeleted).map((e) => e.path).sort();

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe("a device syncs only what it does not ignore, both ways", () => {
  it("names the agent ignores, uploaded by another client, are neither downloaded nor deleted from the server", async () => {
    const account = await createAccount(endpoints, "ignored");
    const a = await device(account, "laptop");
    const other = await device(account, "script");
    await a.agent.syncNow();
    for (const name of ["report.tmp", "notes~", "video.part"]) {
      await writeFile(join(other.dir, name), `${name} from elsewhere\n`);
      await other.client.upload(join(other.dir, name), `/${name}`);
    }
    await a.agent.syncNow();
    await a.agent.syncNow();
    for (const name of ["report.tmp", "notes~", "video.part"]) expect(existsSync(join(a.dir, name)), name).toBe(false);
    expect(await live(a, "/")).toEqual(["/notes~", "/report.tmp", "/video.part"]);
    expect(a.events.filter((e) => e.kind === "delete-remote")).toEqual([]);
  });

  it("an ignored name this device once downloaded (an older agent did) is never deleted from the server", async () => {
    const account = await createAccount(endpoints, "ignored-old");
    const a = await device(account, "laptop");
    const other = await device(account, "script");
    await a.agent.syncNow();
    await writeFile(join(other.dir, "draft.tmp"), "kept on the server\n");
    const uploaded = await other.client.upload(join(other.dir, "draft.tmp"), "/draft.tmp");
    // What an agent from before this rule left behind: the file recorded as synced, and no longer here.
    const statePath = join(a.dir, ".satchel-sync", "state.json");
    const state = JSON.parse(await readFile(statePath, "utf8"));
    state.files["/draft.tmp"] = { revision: uploaded.revision.toString(), size: 19, mtimeMs: 1, blocks: [] };
    await writeFile(statePath, JSON.stringify(state));
    await a.agent.open();
    await a.agent.syncNow();
    expect(await live(a, "/")).toEqual(["/draft.tmp"]);
    expect(a.events.filter((e) => e.kind === "delete-remote")).toEqual([]);
  });
});

describe("a folder the server keeps after a device deleted it comes back on that device", () => {
  it("a folder holding a name the agent ignores (put there by another client) stays on the server with it, and is made again on the device that deleted it", async () => {
    const { a, b } = await laptopWithIgnoredIn("ignored-kept");
    expect(existsSync(join(a.dir, "Work", "Sub", "scratch.tmp"))).toBe(false);

    await rm(join(a.dir, "Work"), { recursive: true });
    await a.agent.syncNow();
    // The server keeps what the laptop never had, with the folders above it; plan.txt is in the trash.
    expect(await live(a, "/Work")).toEqual(["/Work/Sub", "/Work/Sub/scratch.tmp"]);
    // The laptop shows the server's tree again: the folders, not the ignored name.
    expect(existsSync(join(a.dir, "Work", "Sub"))).toBe(true);
    expect(existsSync(join(a.dir, "Work", "plan.txt"))).toBe(false);
    expect(existsSync(join(a.dir, "Work", "Sub", "scratch.tmp"))).toBe(false);
    // It stays made: the next pass deletes nothing more.
    const deletes = a.events.filter((e) => e.kind === "delete-remote").length;
    await a.agent.syncNow();
    expect(a.events.filter((e) => e.kind === "delete-remote").length).toBe(deletes);
    await b.agent.syncNow();
    expect(existsSync(join(b.dir, "Work", "Sub"))).toBe(true);
    expect(existsSync(join(b.dir, "Work", "plan.txt"))).toBe(false);
  });
});

describe("a change this device did not apply stays remembered while the journal has not caught up", () => {
  it("a folder moved elsewhere while this device re-lists it keeps the ignored name it holds: the device's later delete of the folder at its new place names a seen cursor before it", async () => {
    const { a, b } = await laptopWithIgnoredIn("unapplied-moved");

    // The laptop deletes Work; the server keeps it for scratch.tmp, and the laptop re-lists it. Just
    // before that listing, another device moves Work: the listing is ahead of the laptop's journal.
    const listFolder = a.client.meta.listFolder.bind(a.client.meta);
    let moved = false;
    Object.assign(a.client.meta, {
      listFolder: async (...args: Parameters<typeof listFolder>) => {
        if (!moved && args[0].path === "/Work") {
          moved = true;
          await b.client.meta.move({ fromPath: "/Work", toPath: "/Moved" });
        }
        return listFolder(...args);
      },
    });
    await rm(join(a.dir, "Work"), { recursive: true });
    await a.agent.syncNow();
    expect(moved).toBe(true);

    // The next pass takes the move from the journal and then fails (the metaserver goes away) before
    // it looks at the folder the move landed in.
    const getFileMetadata = a.client.meta.getFileMetadata.bind(a.client.meta);
    Object.assign(a.client.meta, {
      getFileMetadata: async () => {
        throw new ConnectError("the metaserver went away", Code.Unavailable);
      },
    });
    await a.agent.syncNow().catch(() => undefined);
    Object.assign(a.client.meta, { getFileMetadata });
    expect(existsSync(join(a.dir, "Moved"))).toBe(true);

    // The user deletes the folder at its new place: what the laptop never had stays on the server.
    await rm(join(a.dir, "Moved"), { recursive: true });
    await a.agent.syncNow();
    expect(await live(a, "/")).toEqual(["/Moved", "/Moved/Sub", "/Moved/Sub/scratch.tmp"]);
  });
});

describe("a folder this device has only from what came down into it is a synced folder", () => {
  it("renamed locally, it moves on the server as a whole, with the names this device ignores in it", async () => {
    const account = await createAccount(endpoints, "implicit");
    const a = await device(account, "laptop");
    const other = await device(account, "script");
    await writeFile(join(other.dir, "x.txt"), "x\n");
    await other.client.upload(join(other.dir, "x.txt"), "/New/D/x.txt");
    await a.agent.syncNow();
    // What a device holds when a file came down into a folder it did not have (the pull made the
    // folder) and the user renamed that folder before the next pass: the file recorded as synced,
    // its folders not yet.
    const statePath = join(a.dir, ".satchel-sync", "state.json");
    const state = JSON.parse(await readFile(statePath, "utf8"));
    expect(Object.keys(state.files)).toEqual(["/New/D/x.txt"]);
    state.folders = state.folders.filter((f: string) => !f.startsWith("/New"));
    await writeFile(statePath, JSON.stringify(state));
    await a.agent.open();
    await writeFile(join(other.dir, "o.tmp"), "a script's scratch file\n");
    await other.client.upload(join(other.dir, "o.tmp"), "/New/D/o.tmp");

    await rename(join(a.dir, "New", "D"), join(a.dir, "New", "E"));
    await a.agent.syncNow();
    await a.agent.syncNow();
    expect(await live(a, "/New")).toEqual(["/New/E", "/New/E/o.tmp", "/New/E/x.txt"]);
    expect((await readdir(join(a.dir, "New"))).sort()).toEqual(["E"]);
  });
});

describe("leaving a shared folder leaves it, and deletes nothing of the others'", () => {
  const shared = async (role: Role) => {
    const ownerAccount = await createAccount(endpoints, "owner");
    const memberAccount = await createAccount(endpoints, "member");
    const owner = await device(ownerAccount, "owner");
    await mkdir(join(owner.dir, "Team"));
    for (const f of ["a.txt", "b.txt", "c.txt"]) await writeFile(join(owner.dir, "Team", f), `${f} of the owner\n`);
    await owner.agent.syncNow();
    await owner.client.meta.shareFolder({ path: "/Team", username: memberAccount.username, role });
    const member = await device(memberAccount, "member-laptop");
    const memberDesktop = await device(memberAccount, "member-desktop");
    await member.agent.syncNow();
    await memberDesktop.agent.syncNow();
    expect(await readFile(join(member.dir, "Team", "c.txt"), "utf8")).toBe("c.txt of the owner\n");
    return { owner, member, memberDesktop, memberAccount };
  };

  it("a member who deletes the shared folder locally leaves it: the folder and its files stay for the owner, and the member's other devices drop it", async () => {
    const { owner, member, memberDesktop, memberAccount } = await shared(Role.EDITOR);
    await rm(join(member.dir, "Team"), { recursive: true });
    await member.agent.syncNow();
    await member.agent.syncNow();
    await owner.agent.syncNow();

    expect(await live(owner, "/Team")).toEqual(["/Team/a.txt", "/Team/b.txt", "/Team/c.txt"]);
    expect(await readFile(join(owner.dir, "Team", "a.txt"), "utf8")).toBe("a.txt of the owner\n");
    const { members } = await owner.client.meta.listMembers({ path: "/Team" });
    expect(members.map((m) => m.username)).not.toContain(memberAccount.username);
    expect((await member.client.meta.listNamespaces({})).namespaces.map((n) => n.path)).toEqual(["/"]);
    expect(member.events.filter((e) => e.kind === "delete-remote")).toEqual([]);
    expect(existsSync(join(member.dir, "Team"))).toBe(false);

    // The member's other device hears of it from the member's own journal and drops its copy.
    await memberDesktop.agent.syncNow();
    expect(existsSync(join(memberDesktop.dir, "Team"))).toBe(false);
    expect(await live(memberDesktop, "/")).toEqual([]);
  });

  it("a member the owner removes while its device syncs drops the folder and never gets it back; an edit it had not sent stays in its own tree", async () => {
    const { owner, member, memberAccount } = await shared(Role.EDITOR);
    // The device lists its namespaces, and the owner removes the member before it reads the
    // shared folder's journal: the pass works from a list that still names the folder (after the root).
    const listed = await member.client.meta.listNamespaces({});
    listed.namespaces.sort((a, b) => Number(a.path === "/") - Number(b.path === "/"));
    await writeFile(join(member.dir, "Team", "b.txt"), "the member's edit, not sent yet\n");
    await owner.client.meta.unshare({ path: "/Team", username: memberAccount.username });
    const listNamespaces = member.client.meta.listNamespaces.bind(member.client.meta);
    let stale = true;
    Object.assign(member.client.meta, { listNamespaces: async (...args: Parameters<typeof listNamespaces>) => (stale ? listed : listNamespaces(...args)) });
    await member.agent.syncNow();
    stale = false;
    await member.agent.syncNow();
    await member.agent.syncNow();

    // The owner's files are gone from the member's device and stay gone.
    expect(existsSync(join(member.dir, "Team", "a.txt"))).toBe(false);
    expect(existsSync(join(member.dir, "Team", "c.txt"))).toBe(false);
    // Downloaded once each, when the member joined; never again.
    expect(member.events.filter((e) => e.kind === "download" && /^\/Team\/[ac]\.txt$/.test(e.path)).length).toBe(2);
    expect((await member.client.meta.listNamespaces({})).namespaces.map((n) => n.path)).toEqual(["/"]);
    // The edit is the member's own: kept (its upload met no b.txt there, so it is a conflicted
    // copy) in the member's own tree, on the device and the server, never in the owner's folder.
    const own = await live(member, "/");
    expect(own).toEqual(["/Team", expect.stringMatching(/^\/Team\/b \(member-laptop's conflicted copy [\d-]+\)\.txt$/)]);
    expect(await readFile(join(member.dir, ...own[1].split("/").filter(Boolean)), "utf8")).toBe("the member's edit, not sent yet\n");
    await owner.agent.syncNow();
    expect(await live(owner, "/Team")).toEqual(["/Team/a.txt", "/Team/b.txt", "/Team/c.txt"]);
    expect(await readFile(join(owner.dir, "Team", "b.txt"), "utf8")).toBe("b.txt of the owner\n");
  });

  it("a shared folder no longer listed for the account goes from the device even when no journal entry says so", async () => {
    // What a device is left with when the metaserver ended the membership and failed before it
    // journaled the unmount: a mount it synced (namespace 987654 at /Old) that is not listed any more.
    const account = await createAccount(endpoints, "unlisted");
    const a = await device(account, "laptop");
    await a.agent.syncNow();
    await mkdir(join(a.dir, "Old"));
    await writeFile(join(a.dir, "Old", "x.txt"), "synced from the shared folder\n");
    await writeFile(join(a.dir, "Old", "mine.txt"), "written here, never sent\n");
    await mkdir(join(a.dir, "Old", "Empty"));
    const x = await stat(join(a.dir, "Old", "x.txt"));
    const statePath = join(a.dir, ".satchel-sync", "state.json");
    const state = JSON.parse(await readFile(statePath, "utf8"));
    state.files["/Old/x.txt"] = { revision: "3", size: x.size, mtimeMs: x.mtimeMs, ino: x.ino, cursor: "3", blocks: [] };
    state.folders.push("/Old", "/Old/Empty");
    state.cursors["987654"] = "3";
    state.mounts = { "987654": "/Old" };
    await writeFile(statePath, JSON.stringify(state));
    await a.agent.open();
    await a.agent.syncNow();
    await a.agent.syncNow();

    expect(existsSync(join(a.dir, "Old", "x.txt"))).toBe(false);
    expect(existsSync(join(a.dir, "Old", "Empty"))).toBe(false);
    // What the user wrote there stays, and is the account's own now.
    expect(await readFile(join(a.dir, "Old", "mine.txt"), "utf8")).toBe("written here, never sent\n");
    expect(await live(a, "/")).toEqual(["/Old", "/Old/mine.txt"]);
    expect(Object.keys((await a.agent.status()).cursors)).not.toContain("987654");
  });

  it("a folder of the member's own where a shared folder gets mounted keeps the member's files out of the shared folder", async () => {
    const ownerAccount = await createAccount(endpoints, "owner-b");
    const memberAccount = await createAccount(endpoints, "member-b");
    const owner = await device(ownerAccount, "owner");
    await mkdir(join(owner.dir, "Team"));
    await writeFile(join(owner.dir, "Team", "plan.txt"), "the owner's plan\n");
    await owner.agent.syncNow();
    // The member made a folder of that name while its agent was not running, and is then invited.
    const member = await device(memberAccount, "member-laptop");
    await mkdir(join(member.dir, "Team"));
    await writeFile(join(member.dir, "Team", "private.txt"), "the member's own notes\n");
    await owner.client.meta.shareFolder({ path: "/Team", username: memberAccount.username, role: Role.EDITOR });
    await member.agent.syncNow();
    await member.agent.syncNow();

    await owner.agent.syncNow();
    expect(await live(owner, "/Team")).toEqual(["/Team/plan.txt"]);
    expect(existsSync(join(owner.dir, "Team", "private.txt"))).toBe(false);
    expect(await readFile(join(member.dir, "Team", "plan.txt"), "utf8")).toBe("the owner's plan\n");
    expect(await readFile(join(member.dir, "Team (2)", "private.txt"), "utf8")).toBe("the member's own notes\n");
    expect(await live(member, "/Team (2)")).toEqual(["/Team (2)/private.txt"]);
  });

  it("`satchel leave` leaves a folder shared with you; the owner keeps it, and a syncing device drops it", async () => {
    const { owner, member, memberAccount } = await shared(Role.EDITOR);
    const cli = await runCli(["leave", "/Team"], cliEnv(endpoints, memberAccount, { SATCHEL_DEVICE_NAME: "leave-cli" })).done;
    expect(cli.code).toBe(0);
    await member.agent.syncNow();
    expect(existsSync(join(member.dir, "Team"))).toBe(false);
    expect(await live(owner, "/Team")).toEqual(["/Team/a.txt", "/Team/b.txt", "/Team/c.txt"]);
  });

  it("a member who renames the shared folder locally renames only their mount: still a member, nothing deleted for the owner", async () => {
    const { owner, member, memberDesktop } = await shared(Role.EDITOR);
    await rename(join(member.dir, "Team"), join(member.dir, "Project"));
    await rm(join(member.dir, "Project", "b.txt"));
    await member.agent.syncNow();
    await member.agent.syncNow();
    await owner.agent.syncNow();
    await memberDesktop.agent.syncNow();

    expect((await member.client.meta.listNamespaces({})).namespaces.map((n) => n.path).sort()).toEqual(["/", "/Project"]);
    expect(await live(owner, "/Team")).toEqual(["/Team/a.txt", "/Team/c.txt"]);
    expect(member.events.filter((e) => e.kind === "leave")).toEqual([]);
    for (const f of ["a.txt", "c.txt"]) expect(await readFile(join(memberDesktop.dir, "Project", f), "utf8")).toBe(`${f} of the owner\n`);
  });

  it("a viewer's local deletes inside the folder come back from the server; the owner keeps everything", async () => {
    const { owner, member } = await shared(Role.VIEWER);
    await rm(join(member.dir, "Team", "b.txt"));
    await member.agent.syncNow();
    await member.agent.syncNow();
    expect(await readFile(join(member.dir, "Team", "b.txt"), "utf8")).toBe("b.txt of the owner\n");
    expect(await live(owner, "/Team")).toEqual(["/Team/a.txt", "/Team/b.txt", "/Team/c.txt"]);
    expect((await member.agent.status()).problems).toEqual([]);
  });
  it("a viewer's local edits, new files and renames are set aside in the viewer's own tree (view only conflicts), and the shared files come back", async () => {
    const { owner, member, memberDesktop } = await shared(Role.VIEWER);
    await writeFile(join(member.dir, "Team", "a.txt"), "the viewer's edit\n");
    await writeFile(join(member.dir, "Team", "mine.txt"), "a viewer's new file\n");
    await rename(join(member.dir, "Team", "c.txt"), join(member.dir, "Team", "renamed.txt"));
    await member.agent.syncNow();
    await member.agent.syncNow();
    await memberDesktop.agent.syncNow();

    expect(await live(owner, "/Team")).toEqual(["/Team/a.txt", "/Team/b.txt", "/Team/c.txt"]);
    expect(await readFile(join(owner.dir, "Team", "a.txt"), "utf8")).toBe("a.txt of the owner\n");
    const aside = "/Team (view only conflicts)";
    expect(await live(member, aside)).toEqual([`${aside}/a.txt`, `${aside}/mine.txt`, `${aside}/renamed.txt`]);
    for (const d of [member, memberDesktop]) {
      for (const f of ["a.txt", "b.txt", "c.txt"]) expect(await readFile(join(d.dir, "Team", f), "utf8")).toBe(`${f} of the owner\n`);
      expect(existsSync(join(d.dir, "Team", "mine.txt"))).toBe(false);
      expect(await readFile(join(d.dir, `Team (view only conflicts)`, "a.txt"), "utf8")).toBe("the viewer's edit\n");
      expect(await readFile(join(d.dir, `Team (view only conflicts)`, "renamed.txt"), "utf8")).toBe("c.txt of the owner\n");
    }
    expect((await member.agent.status()).problems).toEqual([]);
  });

  it("a viewer's new folders in the shared folder go aside with their files, and leave nothing behind there", async () => {
    const { owner, member } = await shared(Role.VIEWER);
    await mkdir(join(member.dir, "Team", "d3", "empty"), { recursive: true });
    await writeFile(join(member.dir, "Team", "d3", "f.txt"), "a viewer's file in a new folder\n");
    await member.agent.syncNow();
    await member.agent.syncNow();

    expect((await readdir(join(member.dir, "Team"))).sort()).toEqual(["a.txt", "b.txt", "c.txt"]);
    const aside = "/Team (view only conflicts)";
    expect(await live(member, aside)).toEqual([`${aside}/d3`, `${aside}/d3/empty`, `${aside}/d3/f.txt`]);
    expect(await live(owner, "/Team")).toEqual(["/Team/a.txt", "/Team/b.txt", "/Team/c.txt"]);
  });

  it("a viewer's rename in case only is set aside once, and the shared file comes back under its own name", async () => {
    const { owner, member } = await shared(Role.VIEWER);
    await rename(join(member.dir, "Team", "b.txt"), join(member.dir, "Team", "B.txt"));
    for (let i = 0; i < 4; i++) await member.agent.syncNow();

    const aside = "/Team (view only conflicts)";
    expect((await live(member, "/")).filter((p) => p.includes("view only conflicts"))).toEqual([aside, `${aside}/B.txt`]);
    expect((await readdir(join(member.dir, "Team"))).sort()).toEqual(["a.txt", "b.txt", "c.txt"]);
    expect(await readFile(join(member.dir, "Team", "b.txt"), "utf8")).toBe("b.txt of the owner\n");
    expect(member.events.filter((e) => e.kind === "upload").length).toBe(1);
    expect(await live(owner, "/Team")).toEqual(["/Team/a.txt", "/Team/b.txt", "/Team/c.txt"]);
  });
});

describe("odd entries in the folder are skipped, and never stop the agent", () => {
  it("a symlink loop, a dangling symlink and a FIFO are skipped with a reason status shows, and files written after still sync", async () => {
    const account = await createAccount(endpoints, "odd");
    const a = await device(account, "laptop", { scanIntervalMs: 500 });
    await mkdir(join(a.dir, "docs"));
    await symlink("..", join(a.dir, "docs", "loop"));
    await symlink(join(a.dir, "nowhere"), join(a.dir, "dangling"));
    execFileSync("mkfifo", [join(a.dir, "pipe")]);
    await a.agent.start();
    // Loops made while the watcher runs: it fails with ELOOP on each.
    await symlink("self", join(a.dir, "self"));
    await symlink("ping", join(a.dir, "pong"));
    await symlink("pong", join(a.dir, "ping"));
    await sleep(500);
    await writeFile(join(a.dir, "docs", "after.txt"), "written after the watcher met the loop\n");
    await until("the file written after to be uploaded", async () => (await live(a, "/")).includes("/docs/after.txt"));
    expect(await live(a, "/")).toEqual(["/docs", "/docs/after.txt"]);
    const { skipped } = await a.agent.status();
    expect(skipped.map((s) => s.path)).toEqual(["/dangling", "/docs/loop", "/ping", "/pipe", "/pong", "/self"]);
    expect(skipped.every((s) => s.reason.length > 0)).toBe(true);
    const cli = await runCli(["status", a.dir], cliEnv(endpoints, account, { SATCHEL_DEVICE_NAME: "status-cli" })).done;
    expect(cli.stdout).toContain("6 entries are not synced");
    expect(cli.stdout).toMatch(/\/self {2}a symbolic link in a loop/);
    expect(cli.stdout).toMatch(/\/pipe {2}a named pipe/);
  });
});

describe("what a killed download leaves behind goes", () => {
  it("the temporary file of a download a killed agent left is removed by the next pass: a folder deleted elsewhere goes here too, and never comes back", async () => {
    const { a, b } = await twoDevicesWith("partial", "top.txt");
    await mkdir(join(a.dir, "d"));
    await writeFile(join(a.dir, "d", "x.txt"), "x\n");
    await a.agent.syncNow();
    await b.agent.syncNow();
    // The agent on b was killed while it downloaded a new version of d/x.txt.
    const leftover = `.x.txt.satchel-${randomUUID()}.partial`;
    await writeFile(join(b.dir, "d", leftover), "half of a version");
    await rm(join(a.dir, "d"), { recursive: true });
    await a.agent.syncNow();
    await b.agent.syncNow();
    expect(existsSync(join(b.dir, "d"))).toBe(false);
    await b.agent.syncNow();
    await a.agent.syncNow();
    expect(await live(a, "/")).toEqual(["/top.txt"]);
    expect(existsSync(join(a.dir, "d"))).toBe(false);
  });
});

describe("a download never overwrites a local edit", () => {
  it("a file edited locally while its new version downloads keeps the edit (a conflicted copy beside the new version), everywhere", async () => {
    const { a, b } = await twoDevicesWith("race", "plan.txt");
    await writeFile(join(b.dir, "plan.txt"), `v2 from the desktop ${randomBytes(8).toString("hex")}\n`);
    await b.agent.syncNow();

    // The user saves plan.txt on the laptop while the laptop is fetching the desktop's version.
    const edited = beforeFirstCall(a.client.blocks, "getBlock", () => writeFile(join(a.dir, "plan.txt"), "the laptop's edit, typed during the download\n"));
    await a.agent.syncNow();
    expect(edited()).toBe(true);
    await a.agent.syncNow();
    await b.agent.syncNow();

    const contents = async (d: SyncDevice) => {
      const out: string[] = [];
      for (const p of await live(d, "/")) out.push(await readFile(join(d.dir, p.slice(1)), "utf8"));
      return out.sort();
    };
    const laptop = await contents(a);
    expect(laptop).toContain("the laptop's edit, typed during the download\n");
    expect(laptop.some((c) => c.startsWith("v2 from the desktop"))).toBe(true);
    expect(await contents(b)).toEqual(laptop);
  });
});

describe("a write made as a transfer lands is sent, never taken for what was synced", () => {
  const contents = async (d: SyncDevice, path: string) => {
    const [file] = (await d.client.list(parentOf(path))).filter((e) => e.path === path && !e.isDeleted);
    const into = join(d.dir, `.check-${randomBytes(4).toString("hex")}`);
    await d.client.downloadVersion(file, into);
    const text = await readFile(into, "utf8");
    await rm(into);
    return text;
  };
  const parentOf = (p: string) => p.slice(0, p.lastIndexOf("/")) || "/";

  it("a user's write just after a download is renamed into place is uploaded on the next pass", async () => {
    const { a, b } = await twoDevicesWith("landed", "notes.txt");
    await writeFile(join(a.dir, "notes.txt"), "v2 from the laptop\n");
    await a.agent.syncNow();

    // The desktop's user saves the file the moment the laptop's version lands there.
    const restore = afterCalls(b.client, "downloadVersion", (args) => writeFile(args[1] as string, "the desktop's edit, saved as the download landed\n"));
    await b.agent.syncNow();
    restore();
    await b.agent.syncNow();
    expect(await contents(a, "/notes.txt")).toBe("the desktop's edit, saved as the download landed\n");
  });

  it("a user's write during an upload that became a conflicted copy is sent as the copy's next version", async () => {
    const { a, b } = await twoDevicesWith("conflict-edit", "plan.txt");
    await writeFile(join(b.dir, "plan.txt"), "the desktop's version, first\n");
    await b.agent.syncNow();

    // The laptop's user edits plan.txt, and saves it again while that edit uploads (and loses).
    await writeFile(join(a.dir, "plan.txt"), "the laptop's edit, take 1\n");
    // Of the same size: only the mtime tells it from what was sent.
    const restore = afterCalls(a.client, "uploadAs", (args) => writeFile(args[0] as string, "the laptop's edit, take 2\n"));
    await a.agent.syncNow();
    restore();
    await a.agent.syncNow();

    const copies = (await live(a, "/")).filter((p) => p.includes("conflicted copy"));
    expect(copies).toHaveLength(1);
    expect(await contents(a, copies[0])).toBe("the laptop's edit, take 2\n");
    expect(await contents(a, "/plan.txt")).toBe("the desktop's version, first\n");
  });
});

describe("the winner of a conflict this device lost always comes down", () => {
  it("a pass that fails while fetching the winner fetches it on the next pass", async () => {
    const { a, b } = await twoDevicesWith("winner", "plan.txt");
    await writeFile(join(b.dir, "plan.txt"), "the desktop's version wins\n");
    await b.agent.syncNow();

    // The laptop's user saves plan.txt just as the laptop reads the journal: the desktop's version
    // is not taken over the unsent edit (it is to come down after).
    beforeFirstCall(a.client.meta, "listDelta", () => writeFile(join(a.dir, "plan.txt"), "the laptop's edit, which loses\n"));
    // The edit goes up as a conflicted copy (in the pass the edit asks for next); fetching the
    // winner after that fails once (the metaserver went away).
    const currentVersion = a.client.currentVersion.bind(a.client);
    let failed = false;
    Object.assign(a.client, {
      currentVersion: async (...args: Parameters<typeof currentVersion>) => {
        if (!failed && a.events.some((e) => e.kind === "conflict")) {
          failed = true;
          throw new ConnectError("metaserver restarting", Code.Unavailable);
        }
        return currentVersion(...args);
      },
    });
    await a.agent.syncNow().catch(() => undefined);
    expect(failed).toBe(true);
    await a.agent.syncNow();
    await a.agent.syncNow();

    expect(await readFile(join(a.dir, "plan.txt"), "utf8")).toBe("the desktop's version wins\n");
    const copies = (await live(a, "/")).filter((p) => p.includes("conflicted copy"));
    expect(copies).toHaveLength(1);
    expect(await readFile(join(a.dir, copies[0].slice(1)), "utf8")).toBe("the laptop's edit, which loses\n");
  });
});

describe("the seen cursor never passes what the device did not apply", () => {
  it("a folder deleted on a device whose download of a file in it failed keeps that file on the server", async () => {
    const account = await createAccount(endpoints, "unapplied");
    const a = await device(account, "laptop");
    const b = await device(account, "desktop");
    await mkdir(join(a.dir, "X"));
    await writeFile(join(a.dir, "X", "f1.txt"), "f1\n");
    await a.agent.syncNow();
    await b.agent.syncNow();
    await writeFile(join(b.dir, "X", "new.bin"), randomBytes(5000));
    await b.agent.syncNow();

    // The laptop cannot fetch new.bin (its blocks unreadable for now): a problem, and the pass goes on.
    const getBlock = a.client.blocks.getBlock.bind(a.client.blocks);
    Object.assign(a.client.blocks, {
      getBlock: async () => {
        throw new ConnectError("block unreadable for now", Code.DataLoss);
      },
    });
    await a.agent.syncNow();
    expect((await a.agent.status()).problems.map((p) => p.path)).toEqual(["/X/new.bin"]);

    // The user deletes X on the laptop, which never had new.bin.
    await rm(join(a.dir, "X"), { recursive: true });
    await a.agent.syncNow();
    expect(await live(a, "/X")).toEqual(["/X/new.bin"]);
    Object.assign(a.client.blocks, { getBlock });
  });
});

describe("a rename needs the same content, not only the same inode", () => {
  it("a new file that reuses a vanished file's inode, size and mtime but holds other bytes is uploaded, not taken for a move", async () => {
    const account = await createAccount(endpoints, "inode");
    const a = await device(account, "laptop");
    const b = await device(account, "desktop");
    await writeFile(join(a.dir, "old.txt"), "the old file's bytes\n");
    await a.agent.syncNow();
    await rm(join(a.dir, "old.txt"));
    await writeFile(join(a.dir, "new.txt"), "other bytes, same size\n".slice(0, 21));
    // The file system gave the new file the old one's inode, and the clock the same mtime.
    const { stat } = await import("node:fs/promises");
    const now = await stat(join(a.dir, "new.txt"));
    const statePath = join(a.dir, ".satchel-sync", "state.json");
    const state = JSON.parse(await readFile(statePath, "utf8"));
    Object.assign(state.files["/old.txt"], { ino: now.ino, size: now.size, mtimeMs: now.mtimeMs });
    await writeFile(statePath, JSON.stringify(state));
    await a.agent.open();
    await a.agent.syncNow();

    expect(await live(a, "/")).toEqual(["/new.txt"]);
    await b.agent.syncNow();
    expect(await readFile(join(b.dir, "new.txt"), "utf8")).toBe("other bytes, same size\n".slice(0, 21));
    expect(a.events.filter((e) => e.kind === "move-remote")).toEqual([]);
  });
});

describe("a retried upload is the same request", () => {
  it("an upload whose commit landed but whose answer never reached the device is sent again as the same request: no conflicted copy of itself", async () => {
    const account = await createAccount(endpoints, "retry");
    const a = await device(account, "laptop", { retry: { firstDelayMs: 0, maxDelayMs: 0 } });
    await writeFile(join(a.dir, "notes.txt"), "first\n");
    await a.agent.syncNow();
    await writeFile(join(a.dir, "notes.txt"), "second, committed but not recorded\n");

    // The commit reaches the server; the device never learns it (the process died, the answer was lost).
    // (The SDK sends commits in CommitBatch calls.)
    const commitBatch = a.client.meta.commitBatch.bind(a.client.meta);
    let lost = false;
    Object.assign(a.client.meta, {
      commitBatch: async (...args: Parameters<typeof commitBatch>) => {
        const res = await commitBatch(...args);
        if (res.results.some((r) => r.result.case === "commit" && r.result.value.file) && !lost) {
          lost = true;
          throw new ConnectError("connection reset after the commit", Code.Aborted);
        }
        return res;
      },
    });
    await a.agent.syncNow();
    expect(lost).toBe(true);
    await a.agent.syncNow();
    await a.agent.syncNow();

    expect(await live(a, "/")).toEqual(["/notes.txt"]);
    expect((await a.client.meta.listRevisions({ path: "/notes.txt" })).revisions).toHaveLength(2);
    expect(await readFile(join(a.dir, "notes.txt"), "utf8")).toBe("second, committed but not recorded\n");
  });
});
