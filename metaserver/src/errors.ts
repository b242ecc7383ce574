import { statusMapping } from "@satchel/proto";

/** The shared vocabulary (proto/src/runtime/errors.ts), with the metaserver's backends named. */
export {
  Code, ConnectError, alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied, resourceExhausted, unauthenticated, unavailable,
} from "@satchel/proto";

export const { toStatus, guarded } = statusMapping({ unreachable: "a metadata shard", contended: "the namespace" });
