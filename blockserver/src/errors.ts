import { dataLoss as dataLossStatus, statusMapping } from "@satchel/proto";

/** The shared vocabulary (proto/src/runtime/errors.ts), with the blockserver's backends named. */
export { aborted, Code, ConnectError, invalidArgument, notFound, unavailable } from "@satchel/proto";

export const { toStatus, guarded } = statusMapping({ unreachable: "a storage backend", contended: "the block index" });

/** Raised when a block cannot be rebuilt from the shards that remain: never return wrong bytes. */
export function dataLoss(hashHex: string, detail: string) {
  return dataLossStatus(`block ${hashHex} cannot be read: ${detail}`);
}
