import { create } from "@bufbuild/protobuf";
import { encodeOnce } from "@satchel/proto";
import { SubscribeResponseSchema, type SubscribeResponse } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";

/**
 * One namespace advance as the Subscribe message its watchers are sent: made once per advance and
 * encoded once, so that fanning it out to thousands of streams writes the same bytes to each.
 */
export function advancedMessage(namespaceId: bigint, cursor: bigint): SubscribeResponse {
  return encodeOnce(SubscribeResponseSchema, create(SubscribeResponseSchema, { event: { case: "advanced", value: { namespaceId, cursor } } }));
}
