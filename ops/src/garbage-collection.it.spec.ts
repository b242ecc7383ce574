import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockReferenceCountSchema, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { MetaAdminService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { SatchelClient } from "@satchel/client-sdk";
import { eventually } from "./testing/helpers.js";

const { endpoints } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const dir = mkdtempSync(join(tmpdir(), "satchel-gc-"));
let client: SatchelClient;
let blocks: ReturnType<typeof createClient<typeof BlockService>>;
let admin: ReturnType<typeof createClient<typeof BlockAdminService>>;
let metaAdmin: ReturnType<typeof createClient<typeof MetaAdminService>>;

beforeAll(() => {
  client = new SatchelClient({ metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver, credentials: endpoints.devUser });
  const t = createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken });
  blocks = createClient(BlockService, t);
  admin = createClient(BlockAdminService, t);
  metaAdmin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: endpoints.serviceToken }));
});

const count = async (hash: Buffer) => (await admin.getReferenceCounts({ hashes: [hash] })).counts[0];


describe("reference counting and garbage collection", () => {
  it("a commit takes a reference through the outbox; collection deletes unreferenced blocks and keeps referenced ones", async () => {
    const kept = randomBytes(300_000);
    writeFileSync(join(dir, "kept"), kept);
    const file = await client.upload(join(dir, "kept"), "/gc/kept.bin");
    const keptHash = Buffer.from(file.blocks[0].hash);
    await eventually("the reference to arrive", async () => (await count(keptHash)).refCount === 1n);
    const loose = randomBytes(200_000);
    await blocks.putBlock({ hash: sha(loose), data: loose });
    expect((await count(sha(loose))).refCount).toBe(0n);

    // Collection waits until the relays have delivered past the moment the block was left at zero.
    const first = await admin.runGarbageCollection({ graceSeconds: 0 });
    expect(first.paused).toBe("");
    await eventually("the loose block to be collected", async () => {
      await admin.runGarbageCollection({ graceSeconds: 0 });
      return !(await count(sha(loose))).found;
    });
    expect((await blocks.hasBlocks({ hashes: [sha(loose), keptHash] })).present).toEqual([false, true]);
    expect((await count(sha(loose))).found).toBe(false);
    await client.download("/gc/kept.bin", join(dir, "kept.back"));
    expect(readFileSync(join(dir, "kept.back")).equals(kept)).toBe(true);
  });

  it("an unreferenced block within its grace period is kept", async () => {
    const young = randomBytes(100_000);
    await blocks.putBlock({ hash: sha(young), data: young });
    await admin.runGarbageCollection({ graceSeconds: 3600 });
    expect((await blocks.hasBlocks({ hashes: [sha(young)] })).present).toEqual([true]);
  });

  it("stress: uploads of shared content racing collection never commit a file whose block is gone", async () => {
    const rounds = 25;
    let resent = 0;
    for (let r = 0; r < rounds; r++) {
      const content = randomBytes(50_000 + Math.floor(Math.random() * 200_000));
      writeFileSync(join(dir, `shared-${r}`), content);
      // The block is stored first and left unreferenced, so that every collection may take it.
      await blocks.putBlock({ hash: sha(content), data: content });
      const uploads = Array.from({ length: 3 }, async (_, i) => {
        let sent = 0;
        await client.upload(join(dir, `shared-${r}`), `/gc/stress/${r}-${i}.bin`, (p) => (sent = p.bytesTransferred));
        if (sent > 0) resent++;
      });
      const collections = Array.from({ length: 3 }, async () => {
        await new Promise((res) => setTimeout(res, Math.random() * 30));
        return admin.runGarbageCollection({ graceSeconds: 0 });
      });
      await Promise.all([...uploads, ...collections]);
      // Once the references land, collection must leave the block alone for good.
      await eventually("references to land", async () => (await count(sha(content))).refCount >= 3n);
      await admin.runGarbageCollection({ graceSeconds: 0 });
      for (let i = 0; i < 3; i++) {
        await client.download(`/gc/stress/${r}-${i}.bin`, join(dir, `back-${r}-${i}`));
        expect(sha(readFileSync(join(dir, `back-${r}-${i}`))).equals(sha(content))).toBe(true);
      }
    }
    console.log(`GC race stress: ${rounds} rounds, 3 uploads and 3 collections each; uploads that had to send their block again after a collection: ${resent} of ${rounds * 3}`);
  });

  it("the reconciler recomputes counts from the file versions and fixes deliberate drift", async () => {
    const content = randomBytes(120_000);
    writeFileSync(join(dir, "drift"), content);
    const a = await client.upload(join(dir, "drift"), "/gc/drift-a.bin");
    await client.upload(join(dir, "drift"), "/gc/drift-b.bin");
    const hash = Buffer.from(a.blocks[0].hash);
    await eventually("both references", async () => (await count(hash)).refCount === 2n);
    await admin.setReferenceCounts({ counts: [create(BlockReferenceCountSchema, { hash, found: true, refCount: 0n })] });
    const stray = randomBytes(90_000);
    await blocks.putBlock({ hash: sha(stray), data: stray });
    await admin.setReferenceCounts({ counts: [create(BlockReferenceCountSchema, { hash: sha(stray), found: true, refCount: 7n })] });

    const report = await metaAdmin.reconcileReferences({});
    expect(Number(report.blocksDrifted)).toBeGreaterThanOrEqual(2);
    expect(Number(report.totalDrift)).toBeGreaterThanOrEqual(9);
    expect((await count(hash)).refCount).toBe(2n);
    expect((await count(sha(stray))).refCount).toBe(0n);
    const again = await metaAdmin.reconcileReferences({});
    expect(again.blocksDrifted).toBe(0n);
  });

  it("the orphan sweep removes shard objects no index entry places on their node", async () => {
    const data = randomBytes(150_000);
    await blocks.putBlock({ hash: sha(data), data });
    // Collect the block's index entry but leave one shard behind, as a node that was down would.
    const { minioClient } = await import("./cluster/minio.js");
    const node = endpoints.storageNodes[2];
    const s3 = minioClient(node);
    const key = `blocks/${sha(data).toString("hex").slice(0, 2)}/${sha(data).toString("hex")}.9`;
    await s3.putObject(node.bucket, key, Buffer.from("left behind"));
    const run = await admin.runGarbageCollection({ graceSeconds: 3600, sweepOrphans: true, orphanMinAgeSeconds: 0 });
    expect(Number(run.orphansRemoved)).toBeGreaterThanOrEqual(1);
    await expect(s3.statObject(node.bucket, key)).rejects.toThrow();
    expect(Buffer.from((await blocks.getBlock({ hash: sha(data) })).data).equals(data)).toBe(true);
  });
});
