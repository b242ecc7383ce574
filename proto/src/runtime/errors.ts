import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { requestIdKey } from "./interceptors.js";

/**
 * One error vocabulary for every service: statuses named for what they mean, and one mapping from
 * what libraries throw (the network, MySQL, Redis, S3) to them. UNAVAILABLE and ABORTED say "retry";
 * INTERNAL is a bug or an unknown failure: the caller gets the request id, never the library's
 * message (it may quote SQL, table names, paths); the call's log line has it (the cause).
 */
export { Code, ConnectError };

export const invalidArgument = (message: string) => new ConnectError(message, Code.InvalidArgument);
export const notFound = (message: string) => new ConnectError(message, Code.NotFound);
export const failedPrecondition = (message: string) => new ConnectError(message, Code.FailedPrecondition);
export const alreadyExists = (message: string) => new ConnectError(message, Code.AlreadyExists);
export const permissionDenied = (message: string) => new ConnectError(message, Code.PermissionDenied);
export const unauthenticated = (message: string) => new ConnectError(message, Code.Unauthenticated);
export const resourceExhausted = (message: string) => new ConnectError(message, Code.ResourceExhausted);
export const unavailable = (message: string) => new ConnectError(message, Code.Unavailable);
export const aborted = (message: string) => new ConnectError(message, Code.Aborted);
/** Bytes proven gone: never a guess (an unreachable copy is UNAVAILABLE). */
export const dataLoss = (message: string) => new ConnectError(message, Code.DataLoss);

/** What a service's backends are called in its messages ("a metadata shard", "the namespace"). */
export interface Backends {
  /** What is unreachable when a connection fails. */
  unreachable: string;
  /** What is contended when a transaction deadlocks or waits too long. */
  contended: string;
}

/** Network failures: the backend did not answer (retry later). */
const UNREACHABLE = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "PROTOCOL_CONNECTION_LOST"]);
/** Transactions that lost a race: retry at once. */
const CONTENDED = new Set(["ER_LOCK_DEADLOCK", "ER_LOCK_WAIT_TIMEOUT"]);

/** Maps anything thrown to a status, keeping statuses as they are (requestId goes into an INTERNAL's message). */
export function toStatus(err: unknown, what: string, backends: Backends, requestId?: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err as { code?: string; name?: string; message?: string };
  if ((e.code && UNREACHABLE.has(e.code)) || e.name === "MaxRetriesPerRequestError") {
    return new ConnectError(`${what}: ${backends.unreachable} is unreachable (${e.code ?? e.name}); retry later`, Code.Unavailable);
  }
  if (e.code && CONTENDED.has(e.code)) return new ConnectError(`${what}: contention on ${backends.contended}; retry`, Code.Aborted);
  const cause = err instanceof Error ? err : new Error(String(err));
  return new ConnectError(
    `${what} failed with an internal error${requestId ? ` (request ${requestId})` : ""}; the server's log has the detail`, Code.Internal, undefined, undefined, cause,
  );
}

/** A service's mapping and its handler wrappers: every error a handler throws leaves as a status. */
export function statusMapping(backends: Backends) {
  const map = (err: unknown, what: string, hctx?: HandlerContext) => toStatus(err, what, backends, hctx?.values.get(requestIdKey) || undefined);
  return {
    toStatus: map,
    /** Wraps a unary handler. */
    guarded: <Req, Res>(what: string, fn: (req: Req, hctx: HandlerContext) => Promise<Res>) =>
      async (req: Req, hctx: HandlerContext): Promise<Res> => {
        try {
          return await fn(req, hctx);
        } catch (err) {
          throw map(err, what, hctx);
        }
      },
    /** Wraps a server-streaming handler: a failure before or between messages leaves as a status. */
    guardedStream: <Req, Res>(what: string, fn: (req: Req, hctx: HandlerContext) => AsyncIterable<Res>) =>
      async function* (req: Req, hctx: HandlerContext): AsyncIterable<Res> {
        try {
          yield* fn(req, hctx);
        } catch (err) {
          throw map(err, what, hctx);
        }
      },
  };
}
