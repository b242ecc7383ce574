import { Code, ConnectError } from "@connectrpc/connect";

/** Which way a file failed to move. */
export type ProblemDirection = "upload" | "download";

/**
 * A file the agent could not sync, kept (in the state file) until a later attempt succeeds or the
 * path no longer needs syncing. The file waits for its next retry; the rest of the tree syncs on.
 */
export interface SyncProblem {
  direction: ProblemDirection;
  /** gRPC code name, as on the wire ("data_loss", "unavailable", …); local I/O errors are mapped too. */
  code: string;
  message: string;
  attempts: number;
  /** Epoch milliseconds. */
  firstFailedAt: number;
  lastFailedAt: number;
  nextRetryAt: number;
  /** Download: the revision the device wanted when it failed (later attempts fetch the current one). */
  revision?: string;
  /** Upload: the local file's size and mtime when it failed; a changed file is tried again at once. */
  local?: { size: number; mtimeMs: number };
}

export interface RetryPolicy {
  firstDelayMs: number;
  maxDelayMs: number;
}

/** When a failed file is tried again: 5 s after the first failure, doubling, at most every 10 min. */
export const PROBLEM_RETRY: RetryPolicy = { firstDelayMs: 5_000, maxDelayMs: 10 * 60_000 };

/** The wait after the attempts-th consecutive failure. */
export function retryDelayMs(attempts: number, policy: RetryPolicy = PROBLEM_RETRY): number {
  const doublings = Math.max(0, attempts - 1);
  // 2 ** doublings overflows to Infinity long after the cap; Math.min keeps it finite.
  return Math.min(policy.firstDelayMs * 2 ** doublings, policy.maxDelayMs);
}

/** Whether a problem's file is due for another attempt. */
export const isDue = (problem: SyncProblem, now: number): boolean => problem.nextRetryAt <= now;

/** The problem after one more failure (a first one when the file had none in this direction). */
export function recordFailure(
  previous: SyncProblem | undefined,
  failure: Pick<SyncProblem, "direction" | "code" | "message" | "revision" | "local">,
  now: number,
  policy: RetryPolicy = PROBLEM_RETRY,
): SyncProblem {
  const same = previous?.direction === failure.direction ? previous : undefined;
  const attempts = (same?.attempts ?? 0) + 1;
  return {
    ...failure,
    attempts,
    firstFailedAt: same?.firstFailedAt ?? now,
    lastFailedAt: now,
    nextRetryAt: now + retryDelayMs(attempts, policy),
  };
}

/** Connect's code names are the gRPC ones in snake case: Code.DataLoss is "data_loss". */
export const codeName = (code: Code): string => Code[code].replace(/[A-Z]/g, (c, i: number) => `${i ? "_" : ""}${c.toLowerCase()}`);

/** Local file system errors, by errno code, as the gRPC code a person would expect. */
const LOCAL_ERROR_CODES: Record<string, Code> = {
  ENOENT: Code.NotFound,
  ENOTDIR: Code.NotFound,
  EACCES: Code.PermissionDenied,
  EPERM: Code.PermissionDenied,
  EROFS: Code.PermissionDenied,
  ENOSPC: Code.ResourceExhausted,
  EDQUOT: Code.ResourceExhausted,
  EMFILE: Code.ResourceExhausted,
  EISDIR: Code.FailedPrecondition,
  EBUSY: Code.Unavailable,
  EAGAIN: Code.Unavailable,
  EIO: Code.DataLoss,
};

/** Why one file failed: a service's status, or a local I/O error mapped to one. */
export function failureCause(err: unknown): { code: string; message: string } {
  if (err instanceof ConnectError) return { code: codeName(err.code), message: err.rawMessage };
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof errno === "string" && errno in LOCAL_ERROR_CODES) {
    return { code: codeName(LOCAL_ERROR_CODES[errno]), message: `local file: ${(err as Error).message}` };
  }
  const e = ConnectError.from(err);
  return { code: codeName(e.code), message: e.rawMessage };
}

/**
 * Codes that say the pass as a whole cannot go on (the caller's credentials), as opposed to one
 * file being unreadable, refused or unwritable.
 */
const PASS_FAILURES = new Set([Code.Unauthenticated, Code.Canceled]);

/**
 * Codes a failing service gives for every file alike (unreachable, overloaded, broken): before one
 * of these is pinned on a file, the agent checks that the services answer at all.
 */
const SERVICE_WIDE = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Internal, Code.Unimplemented]);

/** How to treat a failure of one file: fail the pass, check the services first, or record it. */
export function failureScope(err: unknown): "pass" | "check-services" | "file" {
  if (!(err instanceof ConnectError)) {
    // A local file system error is the file's; anything else (a socket's errno, a bug) might not be.
    const errno = (err as NodeJS.ErrnoException | undefined)?.code;
    return typeof errno === "string" && errno in LOCAL_ERROR_CODES ? "file" : "check-services";
  }
  if (PASS_FAILURES.has(err.code)) return "pass";
  return SERVICE_WIDE.has(err.code) ? "check-services" : "file";
}
