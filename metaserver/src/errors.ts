import { Code, ConnectError } from "@connectrpc/connect";

export { Code, ConnectError };

export const invalidArgument = (message: string) => new ConnectError(message, Code.InvalidArgument);
export const notFound = (message: string) => new ConnectError(message, Code.NotFound);
export const failedPrecondition = (message: string) => new ConnectError(message, Code.FailedPrecondition);
export const alreadyExists = (message: string) => new ConnectError(message, Code.AlreadyExists);
export const permissionDenied = (message: string) => new ConnectError(message, Code.PermissionDenied);
export const unauthenticated = (message: string) => new ConnectError(message, Code.Unauthenticated);
export const resourceExhausted = (message: string) => new ConnectError(message, Code.ResourceExhausted);
export const unavailable = (message: string) => new ConnectError(message, Code.Unavailable);

/** The one place library errors (MySQL, Redis, the blockserver) become gRPC statuses. */
export function toConnectError(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err as { code?: string; message?: string };
  switch (e.code) {
    case "ECONNREFUSED":
    case "ETIMEDOUT":
    case "PROTOCOL_CONNECTION_LOST":
      return new ConnectError(`${what}: a metadata shard is unreachable (${e.code}); retry later`, Code.Unavailable);
    case "ER_LOCK_DEADLOCK":
    case "ER_LOCK_WAIT_TIMEOUT":
      return new ConnectError(`${what}: contention on the namespace; retry`, Code.Aborted);
    default:
      return new ConnectError(`${what}: ${e.message ?? String(err)}`, Code.Internal);
  }
}
