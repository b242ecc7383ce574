/**
 * Turns a scheduled user action into one file-system change, given the device's folder as it is
 * when the step runs. Pure, so that what a step does follows from the seed and the folder alone.
 */
import type { UserAction } from "./schedule.js";

/** A device's folder: remote-style paths ("/a/b.txt") of its files and folders. */
export interface LocalListing {
  files: string[];
  dirs: string[];
}

export type FsChange =
  | { op: "write"; path: string; mode: "create" | "overwrite" | "append" | "truncate" }
  | { op: "rm"; path: string; folder: boolean }
  | { op: "rename"; from: string; to: string; folder: boolean }
  | { op: "mkdir"; path: string };

/** Enough names (30 files, 6 folders, each also as "r…", "m…" and in NFD) that most steps make new paths, and enough that races still meet. */
const FILE_NAMES = 30;
const FOLDER_NAMES = 6;

/** Where a device's user may act. */
export interface PlanScope {
  /** The folder the user acts in ("" for the whole device; a member acts only in the shared folder's mount). */
  root?: string;
  /** Folders the user never renames, moves or deletes (the shared folder: the scenarios leave it on purpose). */
  fixed?: string[];
}

const parentOf = (p: string) => p.slice(0, p.lastIndexOf("/"));
const nameOf = (p: string) => p.slice(p.lastIndexOf("/") + 1);
/** The first letter's case swapped: "f1.txt" <-> "F1.txt". */
const swapCase = (name: string) => (name[0] === name[0].toUpperCase() ? name[0].toLowerCase() : name[0].toUpperCase()) + name.slice(1);

/**
 * The change a user action makes, or undefined when there is nothing to do it to (no file to edit).
 * Names never collide on one device, not even by case or Unicode form: a user's own folder holds
 * no twins, so any twin the agents end up with is theirs.
 */
export function planUserAction(listing: LocalListing, action: UserAction, pick: number, scope: PlanScope = {}): FsChange | undefined {
  if (pick < 0) return issueScenario(action);
  const at = <T>(xs: T[], salt = 0): T | undefined => (xs.length === 0 ? undefined : xs[(pick + salt * 7919) % xs.length]);
  const taken = new Set([...listing.files, ...listing.dirs].map(foldKey));
  const free = (p: string) => !taken.has(foldKey(p));
  const root = scope.root ?? "";
  const inScope = (p: string) => root === "" || p.startsWith(`${root}/`);
  const fixed = new Set((scope.fixed ?? []).map(foldKey));
  const folders = [root, ...listing.dirs.filter(inScope)];
  const file = at(listing.files.filter(inScope));
  const dir = at(listing.dirs.filter((d) => inScope(d) && !fixed.has(foldKey(d))));
  const depth = (p: string) => p.slice(root.length).split("/").length;
  switch (action) {
    case "create":
    case "create-nfd": {
      const parent = at(folders, 1)!;
      const base = action === "create-nfd" ? `cafe\u0301${pick % FILE_NAMES}.txt` : `f${pick % FILE_NAMES}.txt`;
      const path = `${parent}/${base}`;
      // Writing an existing name is an edit: the same name twice is one file.
      const existing = listing.files.find((f) => foldKey(f) === foldKey(path));
      if (existing) return { op: "write", path: existing, mode: "overwrite" };
      return free(path) ? { op: "write", path, mode: "create" } : undefined;
    }
    case "edit":
    case "append":
    case "truncate":
      return file === undefined ? undefined : { op: "write", path: file, mode: action === "edit" ? "overwrite" : action };
    case "delete":
      return file === undefined ? undefined : { op: "rm", path: file, folder: false };
    case "rename":
    case "move": {
      if (!file) return undefined;
      const parent = action === "rename" ? parentOf(file) : at(folders, 2)!;
      const to = `${parent}/${action === "rename" ? `r${pick % FILE_NAMES}.txt` : nameOf(file)}`;
      return free(to) ? { op: "rename", from: file, to, folder: false } : undefined;
    }
    case "case-rename":
      return file === undefined ? undefined : { op: "rename", from: file, to: `${parentOf(file)}/${swapCase(nameOf(file))}`, folder: false };
    case "mkdir": {
      const path = `${at(folders, 3)!}/d${pick % FOLDER_NAMES}`;
      return free(path) && depth(path) <= 4 ? { op: "mkdir", path } : undefined;
    }
    case "rename-folder":
    case "move-folder": {
      if (!dir) return undefined;
      const parent = action === "rename-folder" ? parentOf(dir) : at(folders.filter((f) => f !== dir && !f.startsWith(`${dir}/`)), 4)!;
      const to = `${parent}/${action === "rename-folder" ? `m${pick % FOLDER_NAMES}` : nameOf(dir)}`;
      return free(to) && depth(to) <= 5 ? { op: "rename", from: dir, to, folder: true } : undefined;
    }
    case "case-rename-folder":
      return dir === undefined ? undefined : { op: "rename", from: dir, to: `${parentOf(dir)}/${swapCase(nameOf(dir))}`, folder: true };
    case "delete-folder":
      return dir === undefined ? undefined : { op: "rm", path: dir, folder: true };
  }
}

/** The fixed steps of the issue's scenario (pick -1). */
function issueScenario(action: UserAction): FsChange | undefined {
  switch (action) {
    case "rename-folder": return { op: "rename", from: "/X", to: "/Y", folder: true };
    case "append": return { op: "write", path: "/X/f1.txt", mode: "append" };
    case "create": return { op: "write", path: "/X/new.txt", mode: "create" };
    default: return undefined;
  }
}

/** The key two names collide on in Satchel (and on macOS and Windows): case and Unicode form folded. */
export function foldKey(path: string): string {
  return path.normalize("NFC").toLowerCase();
}
