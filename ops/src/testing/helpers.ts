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
