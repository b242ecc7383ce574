import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import type { Connection } from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockReferenceCountSchema, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { SatchelClient } from "@satchel/client-sdk";
import { openDirectory, openShard } from "./testing/metadata.js";
import { NodeControl } from "./testing/node-control.js";
import { eventually } from "./testing/helpers.js";

// Reference counts are what garbage collection trusts: these tests make the orders and outages a
// busy cluster makes, and check that no referenced block can reach zero or be collected.

const { endpoints, stateDir } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(join(tmpdir(), "satchel-refs-"));
let blocks: ReturnType<typeof createClient<typeof BlockService>>;
let admin: ReturnType<typeof createClient<typeof BlockAdminService>>;
let directory: Connection;
let shard: Connection;

beforeAll(async () => {
  const t = createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken });
  blocks = createClient(BlockService, t);
  admin = createClient(BlockAdminService, t);
  directory = await openDirectory(endpoints);
  shard = await openShard(endpoints, directory, 0);
});

afterAll(async () => {
  await shard?.end();
  await directory?.end();
});

const count = async (hash: Buffer) => (await admin.getReferenceCounts({ hashes: [hash] })).counts[0];


async function looseBlock(size = 64_000): Promise<Buffer> {
  const data = randomBytes(size);
  await blocks.putBlock({ hash: sha(data), data });
  return sha(data);
}

/** A metric's value on a /metrics page (NaN when absent). */
async function metric(url: string, series: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

describe("reference changes reach the blockserver exactly once, whatever order they commit in", () => {
  it("a change whose transaction commits after a later one was relayed is still delivered", async () => {
    const [early, late] = [await looseBlock(), await looseBlock()];
    // Two namespaces on one shard: the first takes the lower outbox id but commits last.
    const first = await openShard(endpoints, directory, 0);
    try {
      await first.query("START TRANSACTION");
      await first.query("INSERT INTO block_reference_outbox (hash, delta) VALUES (?, 1)", [early]);
      await shard.query("INSERT INTO block_reference_outbox (hash, delta) VALUES (?, 1)", [late]);
      // A relay pass reads and delivers the later id while the earlier one is still invisible...
      await eventually("the later change to arrive", async () => (await count(late)).refCount === 1n);
      await sleep(300);
      // ...and the earlier one commits only then.
      await first.query("COMMIT");
    } finally {
      await first.end();
    }
    await eventually("the earlier change to arrive too", async () => (await count(early)).refCount === 1n);
    await sleep(1500);
    expect((await count(early)).refCount).toBe(1n);
    expect((await count(late)).refCount).toBe(1n);
    await shard.query("INSERT INTO block_reference_outbox (hash, delta) VALUES (?, -1), (?, -1)", [early, late]);
  });
});

describe("garbage collection never outruns the relays", () => {
  it("a block whose reference waits in an outbox is kept after its reservation ran out", async () => {
    const hash = await looseBlock();
    // A commit reserves its blocks, then writes their references to its shard's outbox...
    await blocks.reserveBlocks({ hashes: [hash], leaseSeconds: 1 });
    // ...and the relay cannot deliver them: a change the blockserver refuses holds the shard's batch.
    const refused = randomBytes(32);
    await shard.query("INSERT INTO block_reference_outbox (hash, delta) VALUES (?, 0), (?, 1)", [refused, hash]);
    try {
      await sleep(2500); // the reservation has run out
      for (let round = 0; round < 6; round++) {
        const run = await admin.runGarbageCollection({ graceSeconds: 0 });
        expect(run.paused).toBe(""); // within the bound: the shard is only behind, not yet silent
        const c = await count(hash);
        expect(c.found).toBe(true);
        expect(c.state).toBe("live");
        await sleep(700);
      }
    } finally {
      await shard.query("DELETE FROM block_reference_outbox WHERE hash = ?", [refused]);
    }
    await eventually("the waiting reference to arrive", async () => (await count(hash)).refCount === 1n);
    expect((await count(hash)).state).toBe("live");
    await shard.query("INSERT INTO block_reference_outbox (hash, delta) VALUES (?, -1)", [hash]);
  });

  it("a relay that recovers from an outage has the counts reconciled, in both directions, and the drift exported", async () => {
    const file = join(dir, "low");
    writeFileSync(file, randomBytes(90_000));
    const client = new SatchelClient({ metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver, credentials: endpoints.devUser });
    const low = Buffer.from((await client.upload(file, "/refs/low.bin")).blocks[0].hash);
    await eventually("the upload's reference", async () => (await count(low)).refCount === 1n);
    const high = await looseBlock();
    const runs = () => metric(endpoints.metrics.metaserver, 'satchel_metaserver_reference_reconciliations_total{result="ok"}');
    const before = await runs();
    // An outage of the relay (a change it cannot deliver), and drift made meanwhile: one block
    // counted below the version holding it (collection could take it), one above.
    const refused = randomBytes(32);
    await shard.query("INSERT INTO block_reference_outbox (hash, delta) VALUES (?, 0)", [refused]);
    try {
      await admin.setReferenceCounts({
        counts: [create(BlockReferenceCountSchema, { hash: low, found: true, refCount: 0n }), create(BlockReferenceCountSchema, { hash: high, found: true, refCount: 4n })],
      });
      await sleep(2500);
    } finally {
      await shard.query("DELETE FROM block_reference_outbox WHERE hash = ?", [refused]);
    }
    // Nobody asks: the relay's recovery does. (A run counted already may have begun before the drift
    // was made, e.g. the one after the previous test's outage: the counts themselves are waited for.)
    await eventually("a reconciliation after the outage", async () => (await count(low)).refCount === 1n && (await count(high)).refCount === 0n, 30_000);
    expect(await runs()).toBeGreaterThan(before);
    expect(await metric(endpoints.metrics.metaserver, 'satchel_metaserver_reference_drift{measure="blocks_counted_low"}')).toBeGreaterThanOrEqual(1);
    expect(await metric(endpoints.metrics.metaserver, 'satchel_metaserver_reference_drift{measure="blocks_counted_high"}')).toBeGreaterThanOrEqual(1);
  });

  it("a block at zero with a shard on a node that is down is not marked for deletion until the node answers", async () => {
    const hash = await looseBlock();
    const nodes = new NodeControl(stateDir, endpoints);
    // Every node holds one shard of a 4+2 block on six nodes.
    await nodes.kill(4);
    try {
      await eventually("the blockserver to see the node down", async () =>
        (await metric(endpoints.metrics.blockserver, `satchel_blockserver_storage_node_up{node="${endpoints.storageNodes[4].name}"}`)) === 0);
      let awaitingNodes = 0n;
      for (let round = 0; round < 8; round++) {
        const run = await admin.runGarbageCollection({ graceSeconds: 0 });
        awaitingNodes += run.awaitingNodes;
        const c = await count(hash);
        expect(c.found).toBe(true);
        expect(c.state).toBe("live"); // marked 'deleting', it could neither go nor be uploaded again
        await sleep(500);
      }
      expect(awaitingNodes).toBeGreaterThan(0n);
    } finally {
      await nodes.start(4);
    }
    await eventually("the blockserver to see the node back", async () =>
      (await metric(endpoints.metrics.blockserver, `satchel_blockserver_storage_node_up{node="${endpoints.storageNodes[4].name}"}`)) === 1);
    await eventually("the block to be collected", async () => {
      await admin.runGarbageCollection({ graceSeconds: 0 });
      return !(await count(hash)).found;
    });
  });
});
