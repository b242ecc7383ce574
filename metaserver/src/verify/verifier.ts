import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { Counter, Gauge } from "prom-client";
import type { Logger } from "@satchel/proto";
import type { BlockAdminService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { failedPrecondition } from "../errors.js";
import type { VersionReads } from "../store/version-reads.js";
import {
  BUCKETS, ProblemList, bucketOf, count, emptyCounts, isUnreadable, planRanges,
  type AffectedFileRef, type Problem, type ProblemKind, type VerifyCounts,
} from "./findings.js";

/** Hashes per InspectBlocks call (the blockserver takes up to 1,000). */
const INSPECT_BATCH = 500;
/** Longest single InspectBlocks call: 500 blocks of up to 16 MiB at a slow scrub rate. */
const INSPECT_TIMEOUT_MS = 3600_000;
/** Tries of one InspectBlocks batch that the blockserver could not answer (UNAVAILABLE). */
const INSPECT_TRIES = 3;
export const MAX_PROBLEMS_LISTED = 10_000;
export const DEFAULT_FILES_LISTED = 1000;
/**
 * Distinct hashes remembered at once (as hex, ~150 bytes each). Past this many references the
 * hash space is walked in several ranges, one remembered set at a time.
 */
export const DEFAULT_HASHES_IN_MEMORY = 200_000;

export interface VerifyOptions {
  /** Read shards as fast as the nodes allow instead of at the scrub rate. */
  unthrottled?: boolean;
  /** Affected files listed over the whole report (0 or absent: DEFAULT_FILES_LISTED). */
  maxFilesListed?: number;
  /** Distinct hashes held in memory at once (a test sets it small to walk several ranges). */
  hashesInMemory?: number;
  signal?: AbortSignal;
}

export interface AffectedFile {
  namespaceId: bigint;
  path: string;
  revision: bigint;
  owner: string;
}

export interface ReportedProblem {
  hash: Buffer;
  kind: ProblemKind;
  shardsGood: number;
  shardsTotal: number;
  files: AffectedFile[];
  filesNotListed: number;
}

export interface VerifyReport extends VerifyCounts {
  versionsChecked: number;
  problems: ReportedProblem[];
  problemsNotListed: number;
  seconds: number;
  bytesRead: bigint;
}

/** The verifier's gauges (what the last run found) and its run counter. */
export interface VerifyMetrics {
  unreadableBlocks: Gauge;
  lostBlocks: Gauge;
  belowFullRedundancyBlocks: Gauge;
  missingIndexBlocks: Gauge;
  lastRunTimestamp: Gauge;
  lastRunDuration: Gauge;
  runs: Counter<"result">;
}

/**
 * The verifier (Magic Pocket's, in the open): walks every live file version's block list on every
 * metadata shard and has the blockserver read and check every shard of each distinct block, so
 * that a block nobody has read for a year is known to be whole, or its files are named. One run
 * at a time per metaserver; a periodic run starts one interval after start(), never at boot.
 */
export class Verifier {
  private timer?: NodeJS.Timeout;
  private background?: AbortController;
  private running?: { startedAt: Date };

  constructor(
    private readonly reads: VersionReads,
    private readonly blockAdmin: Client<typeof BlockAdminService>,
    private readonly logger: Logger,
    private readonly metrics: VerifyMetrics,
  ) {}

  /** Runs a throttled verify every intervalMs, counted from the end of the previous one. */
  start(intervalMs: number): void {
    const schedule = () => {
      this.timer = setTimeout(() => {
        this.background = new AbortController();
        void this.run({ signal: this.background.signal })
          .catch((err: Error) => this.logger.warn({ err: err.message }, "periodic verify failed"))
          .finally(schedule);
      }, intervalMs);
      this.timer.unref();
    };
    schedule();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.background?.abort(new Error("the metaserver is shutting down"));
  }

  async run(opts: VerifyOptions = {}): Promise<VerifyReport> {
    if (this.running) throw failedPrecondition(`a verify run has been going since ${this.running.startedAt.toISOString()}; wait for it to finish`);
    this.running = { startedAt: new Date() };
    try {
      const report = await verify(this.reads, this.blockAdmin, this.logger, opts);
      this.metrics.unreadableBlocks.set(report.blocksUnreadable);
      this.metrics.lostBlocks.set(report.blocksLost);
      this.metrics.belowFullRedundancyBlocks.set(report.blocksBelowFullRedundancy);
      this.metrics.missingIndexBlocks.set(report.referencesToMissingBlocks);
      this.metrics.lastRunTimestamp.set(Date.now() / 1000);
      this.metrics.lastRunDuration.set(report.seconds);
      this.metrics.runs.inc({ result: "ok" });
      return report;
    } catch (err) {
      this.metrics.runs.inc({ result: "failed" });
      throw err;
    } finally {
      this.running = undefined;
    }
  }
}

/**
 * One verify run. Memory stays bounded whatever the size of the tree:
 * 1. a census walk counts references per hash bucket (the first two bytes of the hash);
 * 2. the buckets are split into ranges of at most `hashesInMemory` references; for each range one
 *    walk remembers the distinct hashes seen and sends them to InspectBlocks 500 at a time;
 * 3. if any block is wrong, one more walk collects the files of the (at most 10,000) problem blocks.
 * Walks read the versions in key order, a page at a time; only the metadata is read more than once.
 */
export async function verify(
  reads: VersionReads, blockAdmin: Client<typeof BlockAdminService>, logger: Logger, opts: VerifyOptions = {},
): Promise<VerifyReport> {
  const started = performance.now();
  const signal = opts.signal;
  const counts = emptyCounts();
  const problems = new ProblemList(MAX_PROBLEMS_LISTED);
  let bytesRead = 0n;

  const referencesPerBucket = new Float64Array(BUCKETS);
  let versionsChecked = 0;
  for await (const page of reads.walk(signal)) {
    versionsChecked += page.length;
    for (const v of page) for (const h of v.hashes.values()) referencesPerBucket[bucketOf(h)]++;
  }

  const inspect = async (batch: Buffer[]) => {
    const res = await inspectAgain(() => blockAdmin.inspectBlocks({ hashes: batch, unthrottled: Boolean(opts.unthrottled) }, { signal, timeoutMs: INSPECT_TIMEOUT_MS }), signal);
    if (res.blocks.length !== batch.length) throw new Error(`the blockserver inspected ${res.blocks.length} of ${batch.length} blocks`);
    res.blocks.forEach((b, i) => {
      bytesRead += b.bytesRead;
      const kind = count(counts, b);
      if (kind) problems.add(batch[i].toString("hex"), kind, b);
    });
  };
  const ranges = planRanges(referencesPerBucket, opts.hashesInMemory ?? DEFAULT_HASHES_IN_MEMORY);
  for (const [from, to] of ranges) {
    const seen = new Set<string>();
    let batch: Buffer[] = [];
    for await (const page of reads.walk(signal)) {
      for (const v of page) {
        for (const [hex, h] of v.hashes) {
          const bucket = bucketOf(h);
          if (bucket < from || bucket >= to || seen.has(hex)) continue;
          seen.add(hex);
          batch.push(h);
          if (batch.length >= INSPECT_BATCH) {
            await inspect(batch);
            batch = [];
          }
        }
      }
    }
    if (batch.length > 0) await inspect(batch);
  }

  const limit = opts.maxFilesListed || DEFAULT_FILES_LISTED;
  if (problems.byHex.size > 0) await collectFiles(reads, problems, limit, signal);
  const listed = problems.sorted();
  const files = await describeFiles(reads, listed);
  const report: VerifyReport = {
    ...counts,
    versionsChecked,
    problems: listed.map((p) => ({
      hash: Buffer.from(p.hex, "hex"), kind: p.kind, shardsGood: p.shardsGood, shardsTotal: p.shardsTotal,
      files: p.files.map((f) => files(f)), filesNotListed: p.filesNotListed,
    })),
    problemsNotListed: problems.notListed,
    seconds: (performance.now() - started) / 1000,
    bytesRead,
  };
  for (const p of report.problems) {
    if (isUnreadable(p.kind)) logger.error({ block: p.hash.toString("hex"), kind: p.kind, shardsGood: p.shardsGood, files: p.files.length + p.filesNotListed }, "verify: a referenced block cannot be read");
  }
  logger.info({
    ...counts, versionsChecked, problemsListed: report.problems.length, problemsNotListed: report.problemsNotListed,
    seconds: report.seconds, bytesRead: Number(bytesRead), hashRanges: ranges.length,
  }, "verify finished");
  return report;
}

/**
 * The walk for the files of the problem blocks: each version using one, listed while the budget
 * lasts (unreadable and missing blocks first, so degraded ones cannot crowd them out), counted
 * otherwise. A namespace in the middle of a move can be on two shards at once: listed files are
 * kept distinct, the count of the others may include such a version twice.
 */
async function collectFiles(reads: VersionReads, problems: ProblemList, limit: number, signal?: AbortSignal): Promise<void> {
  const listed = { unreadable: 0, degraded: 0 };
  for await (const page of reads.walk(signal)) {
    for (const v of page) {
      for (const hex of v.hashes.keys()) {
        const p = problems.byHex.get(hex);
        if (!p) continue;
        const key = `${v.namespaceId}/${v.pathKey.toString("hex")}/${v.revision}`;
        if (p.fileKeys.has(key)) continue;
        const cls = isUnreadable(p.kind) ? "unreadable" : "degraded";
        if (listed[cls] < limit) {
          p.fileKeys.add(key);
          p.files.push({ shardId: v.shardId, namespaceId: v.namespaceId, pathKey: v.pathKey, revision: v.revision });
          listed[cls]++;
        } else {
          p.filesNotListed++;
        }
      }
    }
  }
  // Both classes were collected up to the limit; the report holds `limit` in all, worst first.
  let budget = limit;
  for (const p of problems.sorted()) {
    const keep = Math.min(p.files.length, budget);
    p.filesNotListed += p.files.length - keep;
    p.files.length = keep;
    budget -= keep;
  }
}

/**
 * Names the listed files: the display path from `files` when the version is still at its file's
 * path (else the version's path key), and the username of the namespace's owner.
 */
async function describeFiles(reads: VersionReads, problems: Problem[]): Promise<(f: AffectedFileRef) => AffectedFile> {
  const refs = problems.flatMap((p) => p.files);
  const pathOf = new Map<string, string>();
  const ownerOf = new Map<string, string>();
  const byShard = new Map<number, AffectedFileRef[]>();
  for (const r of refs) byShard.set(r.shardId, [...(byShard.get(r.shardId) ?? []), r]);
  for (const [shardId, list] of byShard) for (const [k, v] of await reads.displayPaths(shardId, list)) pathOf.set(k, v);
  for (const [k, v] of await reads.owners([...new Set(refs.map((r) => r.namespaceId))])) ownerOf.set(k, v);
  return (f) => ({
    namespaceId: f.namespaceId,
    path: pathOf.get(`${f.namespaceId}/${f.pathKey.toString("hex")}`) ?? f.pathKey.toString("utf8"),
    revision: f.revision,
    owner: ownerOf.get(String(f.namespaceId)) ?? "",
  });
}

/**
 * Runs an InspectBlocks call again when it failed UNAVAILABLE: a blockserver restarting, or its
 * connection recycled under a long batch (the server gives a draining connection 30 s), is not a
 * reason to fail a whole verify. Inspecting is a read (a repair it queues is queued once), so a
 * second try is safe; after the last the status is the caller's.
 */
export async function inspectAgain<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= INSPECT_TRIES || signal?.aborted || ConnectError.from(err).code !== Code.Unavailable) throw err;
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
}
