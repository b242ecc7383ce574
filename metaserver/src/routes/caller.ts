import type { HandlerContext } from "@connectrpc/connect";
import { principalKey } from "@satchel/proto";
import { permissionDenied, unauthenticated } from "../errors.js";

export interface Caller {
  userId: bigint;
  username: string;
  deviceName: string;
}

/** The signed-in user making a call; a service credential does not act on anyone's files. */
export function callerOf(hctx: HandlerContext): Caller {
  const p = hctx.values.get(principalKey);
  if (!p) throw unauthenticated("no authenticated caller");
  if (p.kind !== "user") throw permissionDenied("this call acts on a user's files: call it with the user's access token, not a service credential");
  return { userId: BigInt(p.userId), username: p.username ?? "", deviceName: p.deviceName ?? "" };
}

/** Every handler is wrapped: what it throws leaves as a status (one mapping, proto/src/runtime/errors.ts). */
export { guarded } from "../errors.js";

