import { parentOf, pathKey } from "./paths.js";

/** A live entry inside a folder being deleted: its path and the cursor of its last change. */
export interface SubtreeEntry {
  path: string;
  cursor: bigint;
}

export interface SeenDeletePlan {
  /** Entries to move to the trash (the folder itself among them when nothing in it survives). */
  doomed: string[];
  /** Tops of the doomed subtrees: one journal entry (and one trash group) each. */
  roots: string[];
  /** Entries created or changed after what the device saw, and the folders that hold them. */
  kept: string[];
}

/**
 * What a folder delete may remove when the device saw the namespace up to `seen`: only entries
 * whose last change it had seen (cursor <= seen). An entry created, changed or moved in after that
 * survives, and so does every folder between it and the deleted folder, so nothing is left without
 * its parent. Paths compare by their case-folded keys.
 */
export function planSeenDelete(folder: SubtreeEntry, inside: SubtreeEntry[], seen: bigint): SeenDeletePlan {
  const rootKey = pathKey(folder.path);
  const keep = new Set<string>();
  const keepWithAncestors = (path: string) => {
    for (let p = path; ; p = parentOf(p)) {
      const key = pathKey(p);
      if (keep.has(key)) return;
      keep.add(key);
      if (key === rootKey || p === "/") return;
    }
  };
  if (folder.cursor > seen) keepWithAncestors(folder.path);
  for (const e of inside) if (e.cursor > seen) keepWithAncestors(e.path);
  const all = [folder, ...inside];
  const doomed = all.filter((e) => !keep.has(pathKey(e.path))).map((e) => e.path);
  const doomedKeys = new Set(doomed.map(pathKey));
  const roots = doomed.filter((p) => pathKey(p) === rootKey || !doomedKeys.has(pathKey(parentOf(p))));
  return { doomed, roots, kept: all.filter((e) => keep.has(pathKey(e.path))).map((e) => e.path) };
}
