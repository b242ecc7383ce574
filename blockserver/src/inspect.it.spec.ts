import { createHash, randomBytes } from "node:crypto";
import { Code, createClient } from "@connectrpc/connect";
import { describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { createAccount, failure, signIn } from "@satchel/ops";

const { endpoints } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();

describe("InspectBlocks (the verifier's probe) across tenants", () => {
  it("a user, even for a block of its own or another user's, gets PERMISSION_DENIED; the service token gets the inspection", async () => {
    const alice = await createAccount(endpoints, "inspect-a");
    const bob = await createAccount(endpoints, "inspect-b");
    const aliceBlocks = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: await signIn(endpoints, alice) }));
    const data = randomBytes(50_000);
    await aliceBlocks.putBlock({ hash: sha(data), data });
    for (const account of [alice, bob]) {
      const asUser = createClient(BlockAdminService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: await signIn(endpoints, account) }));
      expect((await failure(asUser.inspectBlocks({ hashes: [sha(data)] }))).code).toBe(Code.PermissionDenied);
    }
    const anonymous = createClient(BlockAdminService, createSatchelTransport({ baseUrl: endpoints.blockserver }));
    expect((await failure(anonymous.inspectBlocks({ hashes: [sha(data)] }))).code).toBe(Code.Unauthenticated);
    const service = createClient(BlockAdminService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken }));
    const [inspection] = (await service.inspectBlocks({ hashes: [sha(data)], unthrottled: true })).blocks;
    expect(inspection).toMatchObject({ found: true, state: "live", shardsGood: 6, shardsTotal: 6, readable: true, lost: false });
    expect((await failure(service.inspectBlocks({ hashes: [randomBytes(31)] }))).code).toBe(Code.InvalidArgument);
  });
});
