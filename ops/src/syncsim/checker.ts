/**
 * The sync simulation's checker. Pure: it is given every device's folder, the server's tree, trash
 * and histories, what each agent logged, and what the simulated users did (every write, every
 * delete, every kill and every membership that ended), and says what went wrong. A version is named
 * by its content key (the block hashes joined), which the workload makes unique per write.
 */
import { foldKey } from "./plan.js";

/** What a folder or the server holds: path -> content key (FOLDER for a folder). */
export type Tree = Map<string, string>;
export const FOLDER = "<folder>";

/** One version of a file on the server. */
export interface ServerRevision {
  revision: string;
  key: string;
  /** Journal cursor of the change that made it. */
  cursor: string;
}

export interface ServerView {
  /** The first account's live tree (the owner's: the shared folder is in it). */
  live: Tree;
  /** Another account's live tree, by account name (a member sees the shared folder at its mount). */
  liveOf?: Record<string, Tree>;
  /**
   * Folders shared with another account, as the owner's paths: each is a namespace of its own, and
   * revisions and cursors count per namespace, so they are compared only within one.
   */
  sharedFolders?: string[];
  /** Files in the trash, with the revision they held when deleted. */
  trashed: { path: string; revision: string }[];
  /** Every file path the server knows (live or trashed) with its revisions, oldest first. */
  histories: { path: string; revisions: ServerRevision[] }[];
}

/** An agent's event as its log holds it (the fields the checker reads). */
export interface LoggedEvent {
  kind: string;
  path: string;
  revision?: string;
  parentRevision?: string;
  blocks?: string[];
  seenCursor?: string;
  /** For a move. */
  to?: string;
  /** When the agent logged it (ms). */
  at?: number;
}

export interface DeviceView {
  name: string;
  /** The account it syncs (the first account when unset): its folder must hold that account's tree. */
  account?: string;
  tree: Tree;
  events: LoggedEvent[];
}

/** One write a simulated user made: the content a file held right after it. */
export interface UserWrite {
  /** The device whose user wrote ("other" clients too: a web upload is no agent's). */
  device: string;
  path: string;
  key: string;
  /** What the file held just before (an edit, an append, a truncate): that content was the user's to replace. */
  replaced?: string;
  /** When (ms), and at which step of the schedule (for the report). */
  at: number;
  step: number;
  /**
   * The folder it was written in, which the account may only view: it must never reach the server
   * there (the server's version comes back; an agent may keep the edit aside in the viewer's own tree).
   */
  viewOnly?: string;
  /** Written by a client that is not an agent, under a name every agent ignores: it must stay live. */
  ignoredName?: boolean;
}

/** A user's rm (of a file, or of a folder with every file in it): the contents it named. */
export interface UserDelete {
  device: string;
  path: string;
  keys: string[];
  at: number;
  step: number;
}

/** What the simulated users and the faults did, as the harness recorded it. */
export interface SimRecord {
  writes: UserWrite[];
  deletes: UserDelete[];
  /** Each SIGKILL of an agent: what it had committed but not yet logged is unverifiable, nothing more. */
  kills: { device: string; at: number }[];
  /** Memberships that ended (the member left, or the owner removed them): their devices' unsent writes in the folder went with it. */
  revocations: { devices: string[]; folder: string; at: number }[];
}

export interface CheckResult {
  violations: string[];
  /** Versions the devices committed. */
  versionsSynced: number;
  /** Conflicted copies in the final tree. */
  conflicts: number;
  /** Versions replaced by an edit whose upload the agent could not log (it was killed just after). */
  unverifiedEdits: number;
}

/**
 * The names the simulation's other client writes ("o3.tmp", "o3~", "o3.part"), all on the agents'
 * ignore list (client-sdk/src/sync/ignore.ts): no device holds them, and none may delete them.
 */
export const agentsIgnore = (path: string) => /(\.tmp|~|\.part)$/i.test(path.slice(path.lastIndexOf("/") + 1));

/** A conflicted copy's name as the metaserver makes it: "a (B's conflicted copy 2026-12-01) (2).txt". */
const CONFLICTED = / \([^()]*conflicted copy \d{4}-\d{2}-\d{2}\)(?: \(\d+\))?(?=\.[^.]*$|$)/;
export const isConflictedCopy = (path: string) => CONFLICTED.test(nameOf(path));
const markers = (path: string) => nameOf(path).match(new RegExp(CONFLICTED.source, "g"))?.length ?? 0;
const nameOf = (p: string) => p.slice(p.lastIndexOf("/") + 1);
const parentOf = (p: string) => p.slice(0, p.lastIndexOf("/"));
const short = (key: string) => key.slice(0, 12);

const under = (path: string, folder: string) => foldKey(path) === foldKey(folder) || foldKey(path).startsWith(`${foldKey(folder)}/`);

export function checkSimulation(devices: DeviceView[], server: ServerView, record?: SimRecord): CheckResult {
  const violations: string[] = [];
  // Revisions and cursors count per namespace: the shared folder's are compared only with its own.
  const nsOf = (path: string) => server.sharedFolders?.find((f) => under(path, f)) ?? "/";
  // 1. One tree everywhere: every device holds what the server holds, name for name (a device's
  // name in another Unicode form counts as the same name), and no two names a user could not
  // tell apart.
  for (const d of devices) {
    const seen = new Map<string, string>();
    const tree: Tree = new Map();
    for (const [path, key] of d.tree) {
      const twin = seen.get(foldKey(path));
      if (twin !== undefined) violations.push(`${d.name} holds twins "${twin}" and "${path}" (one name on the server)`);
      seen.set(foldKey(path), path);
      tree.set(path.normalize("NFC"), key);
    }
    // Names every agent ignores stay on the server only (the other client wrote them there).
    const remote: Tree = new Map([...(d.account !== undefined && server.liveOf?.[d.account] || server.live)].filter(([p]) => !agentsIgnore(p)));
    const diffs = treeDiff(tree, remote);
    const lostTheRace = new Set(d.events.filter((e) => e.kind === "conflict").map((e) => `missing ${e.path.normalize("NFC")}`));
    if (diffs.length > 0 && diffs.every((x) => lostTheRace.has(x))) {
      violations.push(`${d.name} never got the winner of a conflict it lost: ${diffs.join("; ")}`);
    } else if (diffs.length > 0) violations.push(`${d.name} differs from the server: ${diffs.slice(0, 8).join("; ")}${diffs.length > 8 ? ` (+${diffs.length - 8} more)` : ""}`);
  }

  // 2. Every version a device synced is live, or was replaced by an edit of that very version, or
  // was deleted by a device that had seen it.
  const uploads = devices.flatMap((d) => d.events.filter((e) => e.kind === "upload" && e.blocks).map((e) => ({ device: d.name, ...e })));
  // One content may be committed more than once (a move the server refused is sent as an upload).
  const byKey = new Map<string, typeof uploads>();
  for (const u of uploads) byKey.set(u.blocks!.join(","), [...(byKey.get(u.blocks!.join(",")) ?? []), u]);
  const deletes = devices.flatMap((d) => d.events.filter((e) => e.kind === "delete-remote").map((e) => ({ device: d.name, ...e })));
  const liveKeys = new Set([server.live, ...Object.values(server.liveOf ?? {})].flatMap((t) => [...t.values()]));
  const where = new Map<string, { path: string; revisions: ServerRevision[]; i: number }>();
  for (const h of server.histories) h.revisions.forEach((r, i) => where.set(r.key, { path: h.path, revisions: h.revisions, i }));
  const trashedAt = new Map(server.trashed.map((t) => [`${foldKey(t.path)}#${t.revision}`, t]));
  let unverifiedEdits = 0;
  // A trashed entry moves with its folder: a folder delete covers where its folder went after it.
  const moves = devices.flatMap((d) => d.events.filter((e) => e.kind === "move-remote" && e.to)).sort((a, b) => (a.at ?? 0) - (b.at ?? 0));
  const folderDeletes = deletes.filter((d) => d.seenCursor !== undefined).map((d) => {
    const places = [d.path];
    for (const m of moves) {
      if ((m.at ?? 0) < (d.at ?? 0)) continue;
      for (const p of [...places]) if (under(p, m.path)) places.push(`${m.to}${p.slice(m.path.length)}`);
    }
    return { places, ns: nsOf(d.path), seenCursor: BigInt(d.seenCursor!) };
  });
  // A file delete names the revision and its content; the entry may have moved since (with a folder).
  const knowinglyDeleted = (path: string, r: ServerRevision) =>
    deletes.some((d) => d.revision === r.revision && d.blocks?.join(",") === r.key) ||
    folderDeletes.some((d) => d.ns === nsOf(path) && BigInt(r.cursor) <= d.seenCursor && d.places.some((f) => under(path, f)));
  const unverified: { path: string; r: ServerRevision; next: ServerRevision }[] = [];

  const keys = new Set([...byKey.keys(), ...where.keys()]);
  for (const key of keys) {
    if (liveKeys.has(key)) continue;
    const at = where.get(key);
    const named = byKey.get(key)?.[0];
    const label = named ? `${named.path} r${named.revision} (uploaded by ${named.device})` : `version of ${at?.path}`;
    if (!at) {
      violations.push(`${label} is lost: not in the live tree, the trash or any history`);
      continue;
    }
    const r = at.revisions[at.i];
    const next = at.revisions[at.i + 1];
    // Revisions count per namespace, so an upload made from this one names it exactly. A path's
    // history may hold two files' versions (a file moved onto a deleted one keeps that one's past),
    // so the next revision there need not be an edit of this one.
    const editedFrom = uploads.some((u) => u.parentRevision === r.revision && nsOf(u.path) === nsOf(at.path));
    if (next) {
      // Replaced by an edit of this very version; or else it was deleted (knowingly) first, and
      // what came next at its path is another file: a new one, or one moved there.
      const editor = byKey.get(next.key)?.find((u) => u.revision === next.revision);
      if (!editor && !editedFrom) {
        unverifiedEdits++;
        unverified.push({ path: at.path, r, next });
      }
      else if (!editedFrom && !knowinglyDeleted(at.path, r)) {
        violations.push(`${label} was replaced at ${at.path} by r${next.revision} from ${editor!.device}, made from r${editor!.parentRevision}, and no device deleted it knowingly before`);
      }
      continue;
    }
    // The last of its path's history: in the trash, or deleted knowingly and then superseded there
    // by a file moved onto its name (its versions stay as that name's history).
    if (!trashedAt.has(`${foldKey(at.path)}#${r.revision}`) && !editedFrom && !knowinglyDeleted(at.path, r)) {
      violations.push(`${label} is neither live nor in the trash, though it is the last revision of ${at.path}, and no device deleted it knowingly`);
    }
    // Its deletion is judged below, with every other trashed entry.
  }

  // 3. Nothing is in the trash that no device deleted knowingly.
  const historyOf = new Map(server.histories.map((h) => [foldKey(h.path), h.revisions]));
  for (const t of server.trashed) {
    const r = historyOf.get(foldKey(t.path))?.find((x) => x.revision === t.revision);
    if (!r) {
      violations.push(`${t.path} r${t.revision} is in the trash without a history`);
      continue;
    }
    if (!knowinglyDeleted(t.path, r)) {
      violations.push(`${t.path} r${t.revision} is in the trash, but no device deleted that revision (or its folder having seen it)`);
    }
  }
  const conflicts = [...server.live.keys()].filter(isConflictedCopy).length;
  if (record) {
    violations.push(...judgeUsers(record, devices, server, unverified, new Set(where.keys()), liveKeys));
  }
  return { violations, versionsSynced: uploads.length, conflicts, unverifiedEdits };
}

/**
 * What the users did, judged against where it ended. Every write ends live (on the server, and so
 * on every device of the account), in a version the server keeps (judged above with the others:
 * edited from, or deleted knowingly), or it was replaced on its device by a later write or removed
 * by a delete that named it, or the account's membership of its folder ended after it. Anything
 * else is an edit lost before it was uploaded: invisible to a checker that reads only the agents'
 * logs. A viewer's write never reaches the folder it may only view; a name every agent ignores, written by another
 * client, is never deleted by one. Each conflicted copy holds content a user wrote, beside the
 * name it conflicted with, and a version replaced by an edit no agent logged is explained only by
 * that agent's SIGKILL after the write.
 */
function judgeUsers(
  record: SimRecord, devices: DeviceView[], server: ServerView,
  unverified: { path: string; r: ServerRevision; next: ServerRevision }[], kept: Set<string>, liveKeys: Set<string>,
): string[] {
  const violations: string[] = [];
  const named = (w: UserWrite) => `${w.device}'s write of ${w.path} at step ${w.step} (content ${short(w.key)})`;
  const keysUnder = (folder: string) => new Set([
    ...[...server.live].filter(([p]) => under(p, folder)).map(([, k]) => k),
    ...server.histories.filter((h) => under(h.path, folder)).flatMap((h) => h.revisions.map((r) => r.key)),
  ]);
  // A truncate writes no tag of its own: a viewer and an owner's device that cut one version to
  // half write the same bytes (sim seed 2), and the owner's may reach the folder.
  const byOthers = (w: UserWrite) => record.writes.some((o) => o.viewOnly === undefined && o.device !== w.device && o.key === w.key);
  for (const w of record.writes) {
    const reached = liveKeys.has(w.key) || kept.has(w.key);
    if (w.viewOnly !== undefined) {
      if (keysUnder(w.viewOnly).has(w.key) && !byOthers(w)) violations.push(`${named(w)}, made as a viewer, reached the server in ${w.viewOnly}`);
      continue;
    }
    if (w.ignoredName) {
      if (!liveKeys.has(w.key)) violations.push(`${named(w)}, a name every agent ignores, is not live on the server: an agent deleted or replaced it`);
      continue;
    }
    if (reached) continue;
    const overwritten = record.writes.some((o) => o.replaced === w.key && o.at >= w.at);
    const deleted = record.deletes.some((d) => d.keys.includes(w.key));
    const revoked = record.revocations.some((r) => r.devices.includes(w.device) && r.at >= w.at && under(w.path, r.folder));
    if (!overwritten && !deleted && !revoked) {
      violations.push(`lost write: ${named(w)} never reached the server, and no later write, delete or leave of that user replaced or removed it`);
    }
  }

  // Conflicted copies: made of what a user wrote (never a viewer's), beside what they conflicted with.
  // A viewer's write counts too: kept aside in the viewer's own tree, it may become a conflicted copy there.
  const written = new Map(record.writes.filter((w) => !w.ignoredName).map((w) => [w.key, w]));
  for (const tree of [server.live, ...Object.values(server.liveOf ?? {})]) {
    for (const [path, key] of tree) {
      if (key !== FOLDER && isConflictedCopy(path) && !written.has(key)) violations.push(`conflicted copy ${path} holds content no user wrote (${short(key)})`);
    }
  }
  for (const d of devices) {
    for (const e of d.events) {
      if (e.kind === "upload" && e.blocks && isConflictedCopy(e.path) && !written.has(e.blocks.join(","))) {
        violations.push(`${d.name} uploaded conflicted copy ${e.path} holding content no user wrote (${short(e.blocks.join(","))})`);
      }
      // Only a conflicted copy made of this path (one more marker than its name has): an agent also
      // logs as a conflict a case twin it renames, or a viewer's edit it sets aside, under any name.
      if (e.kind !== "conflict" || !e.to || markers(e.to) !== markers(e.path) + 1) continue;
      const original = nameOf(e.to).replace(CONFLICTED, "");
      if (foldKey(parentOf(e.to)) !== foldKey(parentOf(e.path)) || foldKey(original) !== foldKey(nameOf(e.path))) {
        violations.push(`${d.name}'s conflicted copy ${e.to} does not sit beside ${e.path}, the path it conflicted with`);
      }
    }
  }

  // An edit whose upload no agent logged: only a SIGKILL between the commit and its log line explains it.
  for (const u of unverified) {
    const w = written.get(u.next.key);
    if (!w) {
      violations.push(`${u.path} r${u.r.revision} was replaced by r${u.next.revision}, content no user wrote (${short(u.next.key)}) and no agent logged`);
    } else if (!record.kills.some((k) => k.device === w.device && k.at >= w.at)) {
      violations.push(`${u.path} r${u.r.revision} was replaced by r${u.next.revision} (${named(w)}) that no agent logged, though ${w.device}'s agent was not killed after that write`);
    }
  }
  return violations;
}

/** What differs between a device's tree and the server's, as short lines. */
export function treeDiff(local: Tree, remote: Tree): string[] {
  const out: string[] = [];
  for (const [p, k] of remote) {
    if (!local.has(p)) out.push(`missing ${p}`);
    else if (local.get(p) !== k) out.push(`${k === FOLDER || local.get(p) === FOLDER ? "file/folder mismatch" : "other content"} at ${p}`);
  }
  for (const p of local.keys()) if (!remote.has(p)) out.push(`extra ${p}`);
  return out;
}

/**
 * The events of one device that touch the paths a violation names (the path, a folder above it,
 * or anything under it), oldest first, at most `limit` of the latest: what a failed seed prints so
 * that a failure seen once, under a timing that does not come again, can still be read.
 */
export function eventsAbout(violations: string[], events: LoggedEvent[], limit = 30): LoggedEvent[] {
  const named = new Set(violations.flatMap((v) => v.match(/\/[^\s,:;()"]+/g) ?? []));
  if (named.size === 0) return [];
  const related = (p: string | undefined) =>
    p !== undefined && [...named].some((n) => n === p || n.startsWith(`${p}/`) || p.startsWith(`${n}/`));
  return events.filter((e) => related(e.path) || related(e.to)).slice(-limit);
}
