import type { Client } from "@connectrpc/connect";
import type { BlockAdminService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { minioClient } from "../cluster/minio.js";

/** Every shard object on every storage node, as node name -> object keys. */
export async function listShardObjects(endpoints: ClusterEndpoints): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  await Promise.all(endpoints.storageNodes.map(async (node) => {
    const keys: string[] = [];
    const stream = minioClient(node).listObjectsV2(node.bucket, "blocks/", true);
    for await (const item of stream as AsyncIterable<{ name?: string }>) if (item.name) keys.push(item.name);
    out.set(node.name, keys);
  }));
  return out;
}

export async function countShardObjects(endpoints: ClusterEndpoints): Promise<number> {
  let n = 0;
  for (const keys of (await listShardObjects(endpoints)).values()) n += keys.length;
  return n;
}

/**
 * Runs garbage collection with no grace period until it has deleted at least `atLeast` blocks in
 * all, and returns how many it deleted. Collection takes a block at zero only once every reference
 * relay has delivered past the moment it reached zero (a relay reports about once a second, less
 * the clock skew allowed), so a block left unreferenced a moment ago waits a few seconds.
 */
export async function collectGarbage(admin: Client<typeof BlockAdminService>, atLeast = 1, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let deleted = 0;
  for (;;) {
    const run = await admin.runGarbageCollection({ graceSeconds: 0 }, { timeoutMs: 120_000 });
    deleted += Number(run.blocksDeleted);
    if (deleted >= atLeast) return deleted;
    if (Date.now() > deadline) {
      throw new Error(`garbage collection deleted ${deleted} of ${atLeast} blocks in ${timeoutMs} ms (last run: paused "${run.paused}", ${run.awaitingRelay} awaiting the relays, ${run.awaitingNodes} awaiting nodes)`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * Waits until `check` holds, looking every `intervalMs`; a check that throws counts as not yet
 * (a node or service on its way back). Fails naming what it waited for and the last error seen.
 */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 30_000, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${lastError instanceof Error ? ` (last error: ${lastError.message})` : ""}`);
}
