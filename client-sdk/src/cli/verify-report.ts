import type { VerifyResponse } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { formatBytes } from "./progress.js";

/** Whether a file cannot be read now: a block under k good shards, or one the index does not hold. */
export const hasUnreadable = (r: VerifyResponse): boolean => r.blocksUnreadable > 0n || r.referencesToMissingBlocks > 0n;

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** The report as plain JSON (hashes in hex), for scripts: `satchel admin verify --json`. */
export function verifyReportJson(r: VerifyResponse) {
  return {
    versionsChecked: Number(r.versionsChecked),
    blocksChecked: Number(r.blocksChecked),
    blocksUnreadable: Number(r.blocksUnreadable),
    blocksLost: Number(r.blocksLost),
    blocksBelowFullRedundancy: Number(r.blocksBelowFullRedundancy),
    referencesToMissingBlocks: Number(r.referencesToMissingBlocks),
    seconds: r.seconds,
    bytesRead: Number(r.bytesRead),
    problemsNotListed: Number(r.problemsNotListed),
    problems: r.problems.map((p) => ({
      hash: hex(p.hash),
      kind: p.kind,
      shardsGood: p.shardsGood,
      shardsTotal: p.shardsTotal,
      files: p.files.map((f) => ({ namespaceId: Number(f.namespaceId), path: f.path, revision: Number(f.revision), owner: f.owner })),
      filesNotListed: Number(p.filesNotListed),
    })),
  };
}

/** A summary line, then one row per affected file of each problem block (worst first). */
export function renderVerifyReport(r: VerifyResponse): string {
  const unavailable = r.blocksUnreadable - r.blocksLost;
  const lines = [
    `verify: ${r.versionsChecked} versions, ${r.blocksChecked} blocks checked in ${r.seconds.toFixed(1)} s (${formatBytes(Number(r.bytesRead))} read): ` +
      `${r.blocksUnreadable} unreadable (${r.blocksLost} lost, ${unavailable} unavailable), ${r.blocksBelowFullRedundancy} below full redundancy, ` +
      `${r.referencesToMissingBlocks} missing from the block index`,
  ];
  if (r.problems.length === 0) return lines.join("\n");
  const rows: string[][] = [["KIND", "SHARDS", "BLOCK", "NAMESPACE", "REVISION", "OWNER", "PATH"]];
  for (const p of r.problems) {
    const block = [p.kind, `${p.shardsGood}/${p.shardsTotal}`, hex(p.hash).slice(0, 16)];
    if (p.files.length === 0) rows.push([...block, "-", "-", "-", p.filesNotListed > 0n ? "" : "(no file found)"]);
    p.files.forEach((f, i) => rows.push([...(i === 0 ? block : ["", "", ""]), String(f.namespaceId), String(f.revision), f.owner, f.path]));
    if (p.filesNotListed > 0n) rows.push(["", "", "", "", "", "", `(${p.filesNotListed} more files not listed)`]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  for (const row of rows) lines.push(row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]))).join("  ").trimEnd());
  if (r.problemsNotListed > 0n) lines.push(`${r.problemsNotListed} more problem blocks not listed (degraded ones first)`);
  return lines.join("\n");
}
