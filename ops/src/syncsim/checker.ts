/**
 * The sync simulation's checker. Pure: it is given every device's folder, the server's tree, trash
 * and histories, and what each agent logged, and says what went wrong. A version is named by its
 * content key (the block hashes joined), which the workload makes unique per write.
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
  live: Tree;
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
  tree: Tree;
  events: LoggedEvent[];
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

const under = (path: string, folder: string) => foldKey(path) === foldKey(folder) || foldKey(path).startsWith(`${foldKey(folder)}/`);

export function checkSimulation(devices: DeviceView[], server: ServerView): CheckResult {
  const violations: string[] = [];
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
    const diffs = treeDiff(tree, server.live);
    if (diffs.length > 0) violations.push(`${d.name} differs from the server: ${diffs.slice(0, 8).join("; ")}${diffs.length > 8 ? ` (+${diffs.length - 8} more)` : ""}`);
  }

  // 2. Every version a device synced is live, or was replaced by an edit of that very version, or
  // was deleted by a device that had seen it.
  const uploads = devices.flatMap((d) => d.events.filter((e) => e.kind === "upload" && e.blocks).map((e) => ({ device: d.name, ...e })));
  // One content may be committed more than once (a move the server refused is sent as an upload).
  const byKey = new Map<string, typeof uploads>();
  for (const u of uploads) byKey.set(u.blocks!.join(","), [...(byKey.get(u.blocks!.join(",")) ?? []), u]);
  const deletes = devices.flatMap((d) => d.events.filter((e) => e.kind === "delete-remote").map((e) => ({ device: d.name, ...e })));
  const liveKeys = new Set(server.live.values());
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
    return { places, seenCursor: BigInt(d.seenCursor!) };
  });
  // A file delete names the revision and its content; the entry may have moved since (with a folder).
  const knowinglyDeleted = (path: string, r: ServerRevision) =>
    deletes.some((d) => d.revision === r.revision && d.blocks?.join(",") === r.key) ||
    folderDeletes.some((d) => BigInt(r.cursor) <= d.seenCursor && d.places.some((f) => under(path, f)));

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
    const editedFrom = uploads.some((u) => u.parentRevision === r.revision);
    if (next) {
      // Replaced by an edit of this very version; or else it was deleted (knowingly) first, and
      // what came next at its path is another file: a new one, or one moved there.
      const editor = byKey.get(next.key)?.find((u) => u.revision === next.revision);
      if (!editor && !editedFrom) unverifiedEdits++;
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
  const conflicts = [...server.live.keys()].filter((p) => p.includes("conflicted copy")).length;
  return { violations, versionsSynced: uploads.length, conflicts, unverifiedEdits };
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
