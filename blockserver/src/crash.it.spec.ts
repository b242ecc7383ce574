import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { NodeControl, REPO_ROOT, serviceEnv, waitServing } from "@satchel/ops";

const { endpoints, stateDir } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();

describe("a blockserver killed in the middle of writing a block", () => {
  it("leaves no live index entry for an unreadable block, and a retry succeeds", async () => {
    // A second blockserver of our own, so that killing it leaves the cluster's one running.
    const port = Number(new URL(endpoints.blockserver).port) + 50;
    const env = { ...process.env, ...serviceEnv(endpoints, "blockserver", port) };
    const victim = spawn(process.execPath, [join(REPO_ROOT, "blockserver", "dist", "bin.js")], { env, stdio: "ignore" });
    const url = `${new URL(endpoints.blockserver).protocol}//127.0.0.1:${port}`;
    await waitServing("victim blockserver", url);
    const nodes = new NodeControl(stateDir, endpoints);
    const data = randomBytes(3_000_000);
    const hash = sha(data);
    // A hung node holds the write open after some shards have landed; then the power goes.
    nodes.pause(2);
    try {
      const victimClient = createClient(BlockService, createSatchelTransport({ baseUrl: url, token: endpoints.serviceToken }));
      const write = victimClient.putBlock({ hash, data }).catch(() => "interrupted");
      await new Promise((r) => setTimeout(r, 1500));
      victim.kill("SIGKILL");
      expect(await write).toBe("interrupted");
    } finally {
      nodes.resume(2);
    }
    const blocks = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken }));
    expect((await blocks.hasBlocks({ hashes: [hash] })).present).toEqual([false]);
    const retried = await blocks.putBlock({ hash, data });
    expect(retried.alreadyStored).toBe(false);
    expect(Buffer.from((await blocks.getBlock({ hash })).data).equals(data)).toBe(true);
  });
});
