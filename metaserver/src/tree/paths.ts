import { createHash } from "node:crypto";
import { invalidArgument } from "../errors.js";

/** Longest path, in UTF-8 bytes of its case-folded form (the database key). */
export const MAX_PATH_BYTES = 3000;
/** Longest single name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;

export const ROOT = "/";

/**
 * Normalises a user's path to Satchel's canonical form: Unicode NFC, one leading slash, no
 * trailing slash. Rejects what could escape or confuse the tree ("..", ".", empty segments,
 * control characters, over-long names) with INVALID_ARGUMENT and the reason.
 */
export function normalizePath(input: string): string {
  if (input === "" || input === ROOT) return ROOT;
  const nfc = input.normalize("NFC");
  if (!nfc.startsWith("/")) throw invalidArgument(`path "${input}" must start with "/"`);
  const body = nfc.endsWith("/") ? nfc.slice(1, -1) : nfc.slice(1);
  const segments = body.split("/");
  for (const seg of segments) {
    if (seg === "") throw invalidArgument(`path "${input}" has an empty segment ("//")`);
    if (seg === "." || seg === "..") throw invalidArgument(`path "${input}" may not contain "${seg}" segments`);
    // C0 and C1 control characters, including NUL.
    if (/[\u0000-\u001f\u007f-\u009f]/.test(seg)) throw invalidArgument(`path "${JSON.stringify(input)}" contains a control character`);
    if (Buffer.byteLength(seg) > MAX_NAME_BYTES) throw invalidArgument(`name "${seg.slice(0, 40)}…" is longer than ${MAX_NAME_BYTES} bytes`);
  }
  const path = `/${segments.join("/")}`;
  if (Buffer.byteLength(pathKey(path)) > MAX_PATH_BYTES) throw invalidArgument(`path is longer than ${MAX_PATH_BYTES} bytes`);
  return path;
}

/** The case-folded key two paths collide on ("/Docs/A.txt" and "/docs/a.TXT" are one file). */
export function pathKey(normalized: string): string {
  return normalized.toLowerCase().normalize("NFC");
}

export function parentOf(normalized: string): string {
  const i = normalized.lastIndexOf("/");
  return i <= 0 ? ROOT : normalized.slice(0, i);
}

export function nameOf(normalized: string): string {
  return normalized.slice(normalized.lastIndexOf("/") + 1);
}

/** Every ancestor folder of a path, outermost first, excluding the root. */
export function ancestorsOf(normalized: string): string[] {
  const out: string[] = [];
  for (let p = parentOf(normalized); p !== ROOT; p = parentOf(p)) out.unshift(p);
  return out;
}

/** A fixed-size index key for "children of this folder". */
export function keyHash(key: string): Buffer {
  return createHash("sha256").update(key).digest().subarray(0, 16);
}

/** Keys strictly inside a folder are in (`${key}/`, `${key}0`): "0" is the character after "/". */
export function descendantRange(key: string): [string, string] {
  return key === ROOT ? ["/", "0"] : [`${key}/`, `${key}0`];
}

/** Whether `path` is `folder` or lies inside it (case-insensitively). */
export function isWithin(path: string, folder: string): boolean {
  const k = pathKey(path);
  const f = pathKey(folder);
  return f === ROOT || k === f || k.startsWith(`${f}/`);
}

/**
 * Where an upload that lost a race is kept, beside the winner, as Dropbox names it:
 * "report (laptop's conflicted copy 2026-11-24).docx", then "... (2).docx" if that is taken.
 */
export function conflictedCopyPath(path: string, deviceName: string, day: Date, attempt: number): string {
  const name = nameOf(path);
  const dot = name.lastIndexOf(".");
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  const who = deviceName ? `${deviceName}'s` : "a device's";
  const suffix = attempt > 1 ? ` (${attempt})` : "";
  const copy = `${stem} (${who} conflicted copy ${day.toISOString().slice(0, 10)})${suffix}${ext}`;
  const parent = parentOf(path);
  return parent === ROOT ? `/${copy}` : `${parent}/${copy}`;
}
