import type { HandlerContext } from "@connectrpc/connect";
import { principalKey } from "@satchel/proto";
import { permissionDenied, toConnectError, unauthenticated } from "../errors.js";

export interface Caller {
  userId: bigint;
  username: string;
  deviceName: string;
}

/** The signed-in user making a call; the service token does not act on anyone's files. */
export function callerOf(hctx: HandlerContext): Caller {
  const p = hctx.values.get(principalKey);
  if (!p) throw unauthenticated("no authenticated caller");
  if (p.kind !== "user") throw permissionDenied("this call acts on a user's files: call it with the user's access token, not the service token");
  return { userId: BigInt(p.userId), username: p.username ?? "", deviceName: p.deviceName ?? "" };
}

/** Wraps a handler so that every error leaves as a gRPC status (mapped in one place, errors.ts). */
export const guarded = <Req, Res>(what: string, fn: (req: Req, hctx: HandlerContext) => Promise<Res>) =>
  async (req: Req, hctx: HandlerContext): Promise<Res> => {
    try {
      return await fn(req, hctx);
    } catch (err) {
      throw toConnectError(err, what);
    }
  };
