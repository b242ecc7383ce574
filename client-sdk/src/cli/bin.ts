#!/usr/bin/env node
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, Code } from "@connectrpc/connect";
import { appendFileSync } from "node:fs";
import { resolve } from "node:path";
import { Command } from "commander";
import { SatchelClient } from "../client.js";
import { loadCliConfig } from "./config.js";
import { NodeState } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { Role } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { AuthSession } from "../auth.js";
import { SyncAgent } from "../sync/agent.js";
import { formatBytes, ProgressBar, renderScrubStatus } from "./progress.js";
import { hasUnreadable, renderVerifyReport, verifyReportJson } from "./verify-report.js";

const program = new Command()
  .name("satchel")
  .description("Satchel: self-hosted file storage and sync")
  .showHelpAfterError();

const client = () => new SatchelClient(loadCliConfig());
/** When a failed file is tried again, as the status and sync output show it. */
const retryTime = (at: number) => (at <= Date.now() ? "retry on the next pass" : `retry at ${new Date(at).toISOString()}`);
/** Operator commands use the operator's credential (SATCHEL_SERVICE_TOKEN). */
const adminClient = () => {
  const config = loadCliConfig();
  if (!config.serviceToken) throw new Error("admin commands need the operator's credential: set SATCHEL_SERVICE_TOKEN");
  return new SatchelClient({ ...config, credentials: undefined, token: config.serviceToken });
};

program
  .command("put")
  .description("upload a local file to a remote path")
  .argument("<local>", "local file")
  .argument("<remote>", "remote path, e.g. /docs/report.pdf")
  .action(async (local: string, remote: string) => {
    const bar = new ProgressBar("put");
    let last = { bytesDone: 0, bytesTotal: 0, bytesTransferred: 0 };
    const file = await client().upload(local, remote, (p) => {
      last = { ...p };
      bar.update(p);
    });
    bar.done(last);
    console.log(`${file.path}  rev ${file.revision}  ${formatBytes(Number(file.size))}  ${file.blocks.length} blocks, ${formatBytes(last.bytesTransferred)} sent`);
  });

program
  .command("get")
  .description("download a remote file to a local path")
  .argument("<remote>", "remote path")
  .argument("<local>", "local file")
  .action(async (remote: string, local: string) => {
    const bar = new ProgressBar("get");
    let last = { bytesDone: 0, bytesTotal: 0, bytesTransferred: 0 };
    const file = await client().download(remote, local, (p) => {
      last = { ...p };
      bar.update(p);
    });
    bar.done(last);
    console.log(`${local}  rev ${file.revision}  ${formatBytes(Number(file.size))}`);
  });

program
  .command("ls")
  .description("list a remote folder")
  .argument("[path]", "remote folder", "/")
  .option("-r, --recursive", "include sub-folders")
  .action(async (path: string, opts: { recursive?: boolean }) => {
    for (const e of await client().list(path, Boolean(opts.recursive))) {
      const when = e.modifiedTime ? timestampDate(e.modifiedTime).toISOString() : "";
      const size = e.isFolder ? "-" : formatBytes(Number(e.size));
      console.log(`${e.isFolder ? "d" : "-"} ${size.padStart(10)}  ${when}  ${e.path}${e.isFolder ? "/" : ""}`);
    }
  });

program
  .command("signup")
  .description("create an account (password from SATCHEL_PASSWORD)")
  .argument("<username>")
  .action(async (username: string) => {
    const password = process.env.SATCHEL_PASSWORD;
    if (!password) throw new Error("set SATCHEL_PASSWORD to the new account's password");
    const config = loadCliConfig({ ...process.env, SATCHEL_USERNAME: username });
    const { userId } = await new AuthSession(config.metaserverUrl, { username, password }, config.ca).auth.createAccount({ username, password });
    console.log(`account ${username} created (user ${userId}); sign in with SATCHEL_USERNAME=${username} SATCHEL_PASSWORD=...`);
  });

program
  .command("mkdir")
  .description("create a remote folder")
  .argument("<path>")
  .action(async (path: string) => {
    const { folder } = await client().meta.createFolder({ path });
    console.log(`${folder?.path}/`);
  });

program
  .command("rm")
  .description("move a remote file or folder to the trash (--permanent: remove it from the trash for good)")
  .argument("<path>")
  .option("--permanent", "permanently delete an entry that is in the trash")
  .action(async (path: string, opts: { permanent?: boolean }) => {
    if (opts.permanent) {
      const r = await client().meta.permanentlyDelete({ path });
      console.log(`${path}: ${r.entriesRemoved} entries removed for good`);
    } else {
      await client().meta.delete({ path });
      console.log(`${path}: moved to the trash ("satchel restore ${path}" brings it back)`);
    }
  });

program
  .command("mv")
  .description("move or rename a remote file or folder")
  .argument("<from>")
  .argument("<to>")
  .action(async (from: string, to: string) => {
    const r = await client().meta.move({ fromPath: from, toPath: to });
    console.log(`${from} -> ${r.entry?.path}${r.descendantsMoved ? ` (${r.descendantsMoved} entries inside)` : ""}`);
  });

program
  .command("revisions")
  .description("list a remote file's kept versions")
  .argument("<path>")
  .action(async (path: string) => {
    for (const r of (await client().meta.listRevisions({ path })).revisions) {
      const when = r.modifiedTime ? timestampDate(r.modifiedTime).toISOString() : "";
      console.log(`rev ${String(r.revision).padStart(8)}  ${formatBytes(Number(r.size)).padStart(10)}  ${when}`);
    }
  });

program
  .command("restore")
  .description("restore a trashed entry, or (with --revision) make an earlier version current again")
  .argument("<path>")
  .option("--revision <n>", "revision to restore")
  .action(async (path: string, opts: { revision?: string }) => {
    const c = client();
    if (opts.revision) {
      const { file } = await c.meta.restore({ path, revision: BigInt(opts.revision) });
      console.log(`${file?.path}  now rev ${file?.revision} (content of rev ${opts.revision})`);
    } else {
      const { entry } = await c.meta.undelete({ path });
      console.log(`${entry?.path} is back from the trash`);
    }
  });

program
  .command("share")
  .description("share a folder with another user")
  .argument("<path>")
  .argument("<username>")
  .option("--viewer", "read-only (the default is editor)")
  .action(async (path: string, username: string, opts: { viewer?: boolean }) => {
    const r = await client().meta.shareFolder({ path, username, role: opts.viewer ? Role.VIEWER : Role.EDITOR });
    console.log(`${path} shared with ${username} as ${opts.viewer ? "viewer" : "editor"} (namespace ${r.namespaceId})`);
  });

program
  .command("leave")
  .description("leave a folder someone shared with you (it stays for the owner and the other members)")
  .argument("<path>", "where the shared folder is in your tree")
  .action(async (path: string) => {
    await client().meta.leaveSharedFolder({ path });
    console.log(`you left ${path}; it stays for its owner and the other members`);
  });

program
  .command("unshare")
  .description("remove a member from a folder you own")
  .argument("<path>")
  .argument("<username>")
  .action(async (path: string, username: string) => {
    await client().meta.unshare({ path, username });
    console.log(`${username} no longer has ${path}`);
  });

program
  .command("link")
  .description("make a download link for a file or folder")
  .argument("<path>")
  .option("--expires <seconds>", "how long the link works")
  .action(async (path: string, opts: { expires?: string }) => {
    const r = await client().meta.createShareLink({ path, expiresInSeconds: Number(opts.expires ?? 0) });
    console.log(`${r.url}\n(link ${r.linkId}, expires ${r.expireTime ? timestampDate(r.expireTime).toISOString() : "?"})`);
  });

program
  .command("links")
  .description("list the share links on a file or folder (owners and editors), and whether each works")
  .argument("<path>")
  .option("-r, --recursive", "also the links on everything under a folder")
  .action(async (path: string, opts: { recursive?: boolean }) => {
    const { links } = await client().meta.listShareLinks({ path, recursive: opts.recursive ?? false });
    if (links.length === 0) console.log(`no live links on ${path}`);
    for (const l of links) {
      const expires = l.expireTime ? timestampDate(l.expireTime).toISOString() : "?";
      console.log(`${l.linkId}\t${l.path}\tby ${l.createdBy}\texpires ${expires}\t${l.works ? "works" : `ended: ${l.endedBecause}`}${l.url ? `\t${l.url}` : ""}`);
    }
  });

program
  .command("unlink")
  .description("revoke a share link (yours, or any on a folder you own or edit)")
  .argument("<link-id>")
  .action(async (id: string) => {
    if (!/^\d+$/.test(id)) throw new Error(`a link id is a number (see satchel links), not "${id}"`);
    await client().meta.revokeShareLink({ linkId: BigInt(id) });
    console.log(`link ${id} revoked`);
  });

program
  .command("link-policy")
  .description("let a shared folder's viewers make share links, or stop them (owner only; off by default)")
  .argument("<folder>")
  .requiredOption("--viewers <on|off>", "whether viewers may make links")
  .action(async (path: string, opts: { viewers: string }) => {
    if (!["on", "off"].includes(opts.viewers)) throw new Error(`--viewers takes on or off, not "${opts.viewers}"`);
    await client().meta.setLinkPolicy({ path, viewersMayCreateLinks: opts.viewers === "on" });
    console.log(`viewers of ${path} ${opts.viewers === "on" ? "may" : "may not"} make share links${opts.viewers === "off" ? " (the links they made stop working)" : ""}`);
  });

program
  .command("usage")
  .description("show used space and quota")
  .action(async () => {
    const r = await client().meta.getSpaceUsage({});
    console.log(`${formatBytes(Number(r.usedBytes))} used of ${r.quotaBytes === 0n ? "unlimited" : formatBytes(Number(r.quotaBytes))}`);
  });

program
  .command("sync")
  .description("keep a local folder and your Satchel tree identical, both ways (Ctrl-C stops)")
  .argument("<folder>", "local folder")
  .option("--once", "one pass, then exit")
  .option("--rescan <seconds>", "full rescan of the folder this often, besides the file watcher", "30")
  .option("--event-log <file>", "append every sync event to this file, one JSON object per line")
  .action(async (folder: string, opts: { once?: boolean; rescan: string; eventLog?: string }) => {
    const config = loadCliConfig();
    const c = new SatchelClient(config);
    const rescanSeconds = Number(opts.rescan);
    if (!(rescanSeconds > 0)) throw new Error(`--rescan takes a number of seconds above 0, not "${opts.rescan}"`);
    const agent = new SyncAgent(c, resolve(folder), {
      notifyserverUrl: config.notifyserverUrl || undefined,
      notifyToken: c.session?.accessToken,
      scanIntervalMs: rescanSeconds * 1000,
      onEvent: (e) => {
        // Written before the event takes effect where it announces a change (a delete names what it saw).
        if (opts.eventLog) appendFileSync(opts.eventLog, `${JSON.stringify({ at: Date.now(), ...e })}\n`);
        if (e.kind === "pending") console.log(`${e.files} files, ${formatBytes(e.bytes)} to send`);
        else if (e.kind === "synced") {
          if (e.uploads + e.downloads > 0) console.log(`in sync (${e.uploads} up, ${e.downloads} down)`);
          if (e.problems > 0) console.error(`${e.problems} files could not be synced; "satchel status ${folder}" says why`);
        } else if (e.kind === "problem") {
          console.error(`${`${e.direction} failed`.padEnd(13)} ${e.path}  ${e.code}: ${e.message} (attempt ${e.attempts}, next ${retryTime(e.nextRetryAt)})`);
        } else if (e.kind === "error") console.error(`satchel sync: ${e.message}`);
        else console.log(`${e.kind.padEnd(13)} ${e.path}${"to" in e && e.to ? ` -> ${e.to}` : ""}${"bytes" in e && e.bytes !== undefined ? `  ${formatBytes(e.bytes)}` : ""}`);
      },
    });
    if (opts.once) {
      await agent.open();
      await agent.syncNow();
      return;
    }
    await agent.start();
    console.log(`syncing ${resolve(folder)}; Ctrl-C stops`);
    await new Promise<void>((done) => process.once("SIGINT", () => void agent.stop().then(done)));
  });

program
  .command("status")
  .description("what a synced folder has left to send, when it last synced, and which files could not be synced")
  .argument("<folder>", "local folder")
  .action(async (folder: string) => {
    const agent = new SyncAgent(client(), resolve(folder));
    const s = await agent.status();
    console.log(`${s.tracked} files in sync; ${s.pendingFiles} changes (${formatBytes(s.pendingBytes)}) waiting to be sent`);
    console.log(`last sync: ${s.lastSyncAt ? new Date(s.lastSyncAt).toISOString() : "never"}; cursors ${JSON.stringify(s.cursors)}`);
    if (s.problems.length > 0) console.log(`${s.problems.length} files could not be synced:`);
    for (const p of s.problems) {
      console.log(`  ${p.path}  ${p.direction} failed: ${p.code}: ${p.message}; ${p.attempts} attempt${p.attempts === 1 ? "" : "s"} since ${new Date(p.firstFailedAt).toISOString()}, next ${retryTime(p.nextRetryAt)}`);
    }
    if (s.skipped.length > 0) console.log(`${s.skipped.length} entries are not synced:`);
    for (const e of s.skipped) console.log(`  ${e.path}  ${e.reason}`);
  });

const admin = program.command("admin").description("operator commands");

admin
  .command("move-namespace")
  .description("move a namespace to another metadata shard while it stays online")
  .argument("<namespace>", "namespace id")
  .argument("<shard>", "target shard id")
  .action(async (namespace: string, shard: string) => {
    const r = await adminClient().metaAdmin.moveNamespace({ namespaceId: BigInt(namespace), targetShardId: Number(shard) }, { timeoutMs: 3600_000 });
    console.log(`namespace ${namespace}: shard ${r.sourceShardId} -> ${r.targetShardId}, ${r.rowsCopied} rows copied, writes held ${r.writesHeldMs} ms`);
  });

admin
  .command("quota")
  .description("set a user's quota (0: unlimited)")
  .argument("<username>")
  .argument("<bytes>")
  .action(async (username: string, bytes: string) => {
    await adminClient().metaAdmin.setQuota({ username, quotaBytes: BigInt(bytes) });
    console.log(`${username}: quota ${bytes === "0" ? "unlimited" : formatBytes(Number(bytes))}`);
  });

admin
  .command("prune")
  .description("apply the retention policy now (old versions, expired trash, old journal entries)")
  .action(async () => {
    const r = await adminClient().metaAdmin.prune({}, { timeoutMs: 3600_000 });
    console.log(`${r.versionsPruned} versions pruned, ${r.entriesPurged} trashed entries purged, ${r.journalEntriesCompacted} journal entries compacted`);
  });

admin
  .command("scrub")
  .description("show the blockserver's scrub status, or start a pass")
  .option("--status", "print the status (the default)")
  .option("--now", "start a scrub pass now")
  .option("--wait", "with --now: wait for the pass to finish")
  .option("--unthrottled", "with --now: ignore the scrub rate limit")
  .action(async (opts: { now?: boolean; wait?: boolean; unthrottled?: boolean }) => {
    const c = adminClient();
    const res = opts.now
      ? await c.blockAdmin.runScrub({ wait: Boolean(opts.wait), unthrottled: Boolean(opts.unthrottled) }, { timeoutMs: opts.wait ? 24 * 3600_000 : 10_000 })
      : await c.blockAdmin.getScrubStatus({});
    console.log(renderScrubStatus(res.status!));
  });

admin
  .command("gc")
  .description("run garbage collection now: delete unreferenced blocks past their grace period")
  .option("--grace <seconds>", "use this grace period instead of the configured one")
  .option("--orphans", "also remove shard objects the index does not place (older than an hour)")
  .action(async (opts: { grace?: string; orphans?: boolean }) => {
    const grace = opts.grace === undefined ? undefined : Number(opts.grace);
    if (grace !== undefined && (!Number.isInteger(grace) || grace < 0)) throw new Error("--grace takes a whole number of seconds");
    const r = await adminClient().blockAdmin.runGarbageCollection({ graceSeconds: grace, sweepOrphans: Boolean(opts.orphans) }, { timeoutMs: 3600_000 });
    console.log(`${r.candidates} candidates, ${r.blocksDeleted} blocks deleted, ${formatBytes(Number(r.bytesReclaimed))} reclaimed, ${r.orphansRemoved} orphan shards removed`);
  });

admin
  .command("reconcile")
  .description("recompute every block's reference count from the file versions and fix drift")
  .action(async () => {
    const r = await adminClient().metaAdmin.reconcileReferences({}, { timeoutMs: 3600_000 });
    console.log(`${r.blocksChecked} blocks checked, ${r.blocksDrifted} drifted (total drift ${r.totalDrift}), corrected`);
  });

admin
  .command("verify")
  .description("read every block that file versions reference and report unreadable and degraded blocks with their files (exit 1 when a file cannot be read)")
  .option("--unthrottled", "read as fast as the storage nodes allow instead of at the scrub rate")
  .option("--json", "print the report as JSON")
  .action(async (opts: { unthrottled?: boolean; json?: boolean }) => {
    // No deadline: a throttled run over a large store can outlast any fixed one; Ctrl-C stops it.
    const r = await adminClient().metaAdmin.verify({ unthrottled: Boolean(opts.unthrottled) });
    console.log(opts.json ? JSON.stringify(verifyReportJson(r), null, 2) : renderVerifyReport(r));
    if (hasUnreadable(r)) process.exitCode = 1;
  });

admin
  .command("node")
  .description("mark a storage node dead (its shards are rebuilt elsewhere) or active again")
  .argument("<name>", "storage node, e.g. minio-3")
  .option("--dead", "mark it dead")
  .option("--active", "mark it active")
  .action(async (name: string, opts: { dead?: boolean; active?: boolean }) => {
    if (Boolean(opts.dead) === Boolean(opts.active)) throw new Error("give exactly one of --dead or --active");
    await adminClient().blockAdmin.setNodeState({ node: name, state: opts.dead ? NodeState.DEAD : NodeState.ACTIVE });
    console.log(`${name} is now ${opts.dead ? "dead: run \"satchel admin scrub --now\" to rebuild its shards elsewhere" : "active"}`);
  });

program.parseAsync().catch((err: unknown) => {
  const e = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : (err as Error).message;
  console.error(`satchel: ${e}`);
  process.exit(1);
});
