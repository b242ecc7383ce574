/**
 * Remote paths as the metaserver compares them: case-insensitively and in Unicode NFC, so "/Docs/a"
 * and "/docs/a" name one entry. Pure.
 */

/** The key the server folds a path to: two paths of one key are one entry. */
export function foldKey(path: string): string {
  return path.toLowerCase().normalize("NFC");
}

/** Whether `path` is `folder` or lies under it, as the server sees names. */
export function within(path: string, folder: string): boolean {
  const [p, f] = [foldKey(path), foldKey(folder)];
  return p === f || p.startsWith(f === "/" ? "/" : `${f}/`);
}

/** The remote path of the folder holding `path` ("/" at the top). */
export function parentPath(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** The last name of a remote path ("b.txt" of "/a/b.txt"). */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
