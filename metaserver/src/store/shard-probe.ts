import type { MetaMetrics } from "../metrics.js";
import type { ShardSet } from "./shards.js";

/**
 * Probes the directory and every metadata shard with a cheap query on a timer: an unreachable shard
 * is an alert (satchel_metaserver_shard_up) before it is a user's error. Returns what stops it.
 */
export function probeShards(shards: ShardSet, metrics: Pick<MetaMetrics, "shardUp" | "shardPing">, intervalMs: number): () => void {
  const probe = async () => {
    const targets: [string, { query(sql: string): Promise<unknown> }][] = [["directory", shards.directory], ...shards.shardIds.map((id) => [String(id), shards.shard(id)] as [string, typeof shards.directory])];
    await Promise.all(targets.map(async ([name, pool]) => {
      const started = performance.now();
      try {
        await Promise.race([pool.query("SELECT 1"), new Promise((_, reject) => setTimeout(() => reject(new Error("probe timeout")), 2000))]);
        metrics.shardUp.set({ shard: name }, 1);
        metrics.shardPing.observe({ shard: name }, (performance.now() - started) / 1000);
      } catch {
        metrics.shardUp.set({ shard: name }, 0);
      }
    }));
  };
  const probeTimer = setInterval(() => void probe(), intervalMs);
  probeTimer.unref();
  void probe();
  return () => clearInterval(probeTimer);
}
