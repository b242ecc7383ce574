import { Code, ConnectError } from "@connectrpc/connect";

export { Code, ConnectError };

/** Raised when a block cannot be rebuilt from the shards that remain: never return wrong bytes. */
export function dataLoss(hashHex: string, detail: string): ConnectError {
  return new ConnectError(`block ${hashHex} cannot be read: ${detail}`, Code.DataLoss);
}

export function invalidArgument(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** Maps an unexpected library error (MySQL, S3) to a status, keeping ConnectErrors as they are. */
export function toConnectError(err: unknown, what: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err as { code?: string; message?: string };
  if (e.code === "ECONNREFUSED" || e.code === "ETIMEDOUT" || e.code === "PROTOCOL_CONNECTION_LOST") {
    return new ConnectError(`${what}: a backend is unreachable (${e.code}); retry later`, Code.Unavailable);
  }
  if (e.code === "ER_LOCK_DEADLOCK" || e.code === "ER_LOCK_WAIT_TIMEOUT") {
    return new ConnectError(`${what}: contention on the block index; retry`, Code.Aborted);
  }
  return new ConnectError(`${what}: ${e.message ?? String(err)}`, Code.Internal);
}
