import { statusMapping } from "@satchel/proto";

/** The shared vocabulary (proto/src/runtime/errors.ts), with the notifyserver's backends named. */
export { ConnectError, invalidArgument, permissionDenied, resourceExhausted, unauthenticated } from "@satchel/proto";

export const { toStatus, guarded, guardedStream } = statusMapping({ unreachable: "the metaserver or Redis", contended: "the metaserver" });
