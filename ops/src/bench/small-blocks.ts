#!/usr/bin/env node
/**
 * Small blocks, against a running local cluster (bash ops/up.sh), all in one run: 4 KiB blocks
 * stored per second through PutBlock on a blockserver that packs them into volumes (started here,
 * beside the cluster's, with SATCHEL_PACK_BELOW_BYTES), through the cluster's blockserver
 * (erasure-coded one by one, as before volumes), and a plain MinIO client's putObject of 4 KiB
 * objects to one node, at the same concurrency; the same for reads; and the MinIO objects and
 * physical bytes each way costs per 1,000 blocks. Not yet a scenario of `npm run bench` (its CI smoke
 * would list every object of the test cluster's nodes); run it on its own against a cluster.
 *   node ops/dist/bench/small-blocks.js [blocks=2000] [in-flight=32] [block-bytes=4096]
 */
import { createHash, randomBytes } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { withRetry } from "@satchel/client-sdk";
import { loadClusterConfig } from "../config.js";
import { minioClient } from "../cluster/minio.js";
import { readClusterFile } from "../cluster/cluster.js";
import { ServiceProcesses } from "../testing/service-process.js";
import { figureLine } from "./figures.js";


async function inFlight<T>(items: T[], n: number, fn: (item: T) => Promise<unknown>): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
  return items.length / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 2000);
  const n = Number(process.argv[3] ?? 32);
  const SIZE = Number(process.argv[4] ?? 4096);
  const config = loadClusterConfig();
  const info = readClusterFile(config.stateDir);
  const extra = new ServiceProcesses("blockserver", info, config.stateDir);
  try {
    const packer = await extra.start("blockserver-bench-packing", 120, { SATCHEL_PACK_BELOW_BYTES: String(Math.max(64 * 1024, SIZE + 1)) });
    const client = (baseUrl: string): Client<typeof BlockService> => createClient(BlockService, createSatchelTransport({ baseUrl, token: info.serviceToken }));
    const packing = client(packer.url);
    const plain = client(info.blockserver);
    const storage = async () => {
      let objects = 0;
      let bytes = 0;
      for (const node of info.storageNodes) {
        for await (const o of minioClient(node).listObjectsV2(node.bucket, "", true)) {
          objects++;
          bytes += (o as { size: number }).size;
        }
      }
      return { objects, bytes };
    };
    const fresh = () => Array.from({ length: count }, () => randomBytes(SIZE));
    const put = (c: Client<typeof BlockService>) => (data: Buffer) => withRetry(() => c.putBlock({ hash: createHash("sha256").update(data).digest(), data }));
    const get = (c: Client<typeof BlockService>) => (data: Buffer) => c.getBlock({ hash: createHash("sha256").update(data).digest() });

    const s0 = await storage();
    const packed = fresh();
    const packPut = await inFlight(packed, n, put(packing));
    const s1 = await storage();
    const coded = fresh();
    const codedPut = await inFlight(coded, n, put(plain));
    const s2 = await storage();
    const packGet = await inFlight(packed, n, get(packing));
    const codedGet = await inFlight(coded, n, get(plain));

    const node = info.storageNodes[0];
    const s3 = minioClient(node);
    const raw = fresh();
    const keys = raw.map((_, i) => `bench-small/${Date.now()}-${i}`);
    const rawPut = await inFlight(raw.map((d, i) => [d, keys[i]] as const), n, ([d, k]) => s3.putObject(node.bucket, k, d, d.length));
    const rawGet = await inFlight(keys, n, async (k) => {
      for await (const _ of await s3.getObject(node.bucket, k)); // drain
    });
    await s3.removeObjects(node.bucket, keys);

    const per1000 = (x: number) => (x * 1000) / count;
    console.log(`${count} blocks of ${SIZE} bytes, ${n} in flight (blocks/s)`);
    console.log(`put: packed ${packPut.toFixed(0)}, erasure-coded ${codedPut.toFixed(0)}, minio putObject ${rawPut.toFixed(0)}`);
    console.log(`get: packed ${packGet.toFixed(0)}, erasure-coded ${codedGet.toFixed(0)}, minio getObject ${rawGet.toFixed(0)}`);
    console.log(`MinIO objects per 1,000 blocks: packed ${per1000(s1.objects - s0.objects).toFixed(0)}, erasure-coded ${per1000(s2.objects - s1.objects).toFixed(0)}`);
    console.log(`physical bytes per logical byte: packed (open volumes) ${((s1.bytes - s0.bytes) / (count * SIZE)).toFixed(2)}, erasure-coded ${((s2.bytes - s1.bytes) / (count * SIZE)).toFixed(2)}`);
    console.log(figureLine("satchel", "small_put_packed_per_s", packPut, "blocks/s"));
    console.log(figureLine("satchel", "small_put_coded_per_s", codedPut, "blocks/s"));
    console.log(figureLine("minio", "small_put_per_s", rawPut, "blocks/s"));
    console.log(figureLine("satchel", "small_get_packed_per_s", packGet, "blocks/s"));
    console.log(figureLine("satchel", "small_get_coded_per_s", codedGet, "blocks/s"));
    console.log(figureLine("minio", "small_get_per_s", rawGet, "blocks/s"));
    console.log(figureLine("satchel", "small_objects_per_1000_packed", per1000(s1.objects - s0.objects), "objects"));
    console.log(figureLine("satchel", "small_objects_per_1000_coded", per1000(s2.objects - s1.objects), "objects"));
    console.log(figureLine("satchel", "small_physical_per_logical_packed", (s1.bytes - s0.bytes) / (count * SIZE), "x"));
    console.log(figureLine("satchel", "small_physical_per_logical_coded", (s2.bytes - s1.bytes) / (count * SIZE), "x"));
  } finally {
    await extra.stopAll();
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
