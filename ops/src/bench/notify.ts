#!/usr/bin/env node
/**
 * Notifyserver fan-out benchmark against a running local cluster (bash ops/up.sh): for each
 * number of concurrent Subscribe streams (each watching its own namespace, 100 streams per HTTP/2
 * connection, opened with the service token), publish namespace advances on Redis at a fixed
 * rate to random watched namespaces, exactly as metaservers do, and measure the fan-out latency
 * from publish to the event arriving on the stream (p50/p99), and how many were delivered.
 *   node ops/dist/bench/notify.js [streams=1000,5000,10000] [rate/s=5000] [seconds=5]
 */
import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { createSatchelTransport, NAMESPACE_CHANNEL } from "@satchel/proto";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { loadClusterConfig } from "../config.js";

const STREAMS_PER_CONNECTION = 100;
const NAMESPACE_BASE = 1_000_000_000n;
const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN);

async function level(endpoints: ClusterEndpoints, streams: number, rate: number, seconds: number): Promise<string> {
  const latencies: number[] = [];
  let opened = 0;
  let failed = "";
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  const clients = Array.from({ length: Math.ceil(streams / STREAMS_PER_CONNECTION) }, () =>
    createClient(NotifyService, createSatchelTransport({ baseUrl: endpoints.notifyserver, token: endpoints.serviceToken })));
  const ready = new Promise<void>((resolve) => {
    for (let i = 0; i < streams; i++) {
      const ns = NAMESPACE_BASE + BigInt(i);
      void (async () => {
        try {
          let first = true;
          for await (const ev of clients[Math.floor(i / STREAMS_PER_CONNECTION)].subscribe({ namespaceIds: [ns] }, { signal: stop.signal })) {
            if (first) {
              first = false;
              if (++opened === streams) resolve();
            }
            if (ev.event.case === "advanced") {
              const at = Number(ev.event.value.cursor);
              latencies.push(Date.now() - at);
            }
          }
        } catch (err) {
          if (!stop.signal.aborted && !failed) failed = (err as Error).message;
        }
      })();
    }
  });
  const opening = performance.now();
  await Promise.race([ready, new Promise((r) => setTimeout(r, 60_000))]);
  const openSeconds = (performance.now() - opening) / 1000;
  if (opened < streams) {
    stop.abort();
    return `${String(streams).padStart(6)} streams: only ${opened} opened in 60 s${failed ? ` (${failed})` : ""}`;
  }
  // Publish as metaservers do; the cursor carries the send time so receivers can measure latency.
  const redis = new Redis(endpoints.redisUrl);
  let sent = 0;
  const started = Date.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (Date.now() - started >= seconds * 1000) {
        clearInterval(timer);
        resolve();
        return;
      }
      // Catch up to the rate by the clock (timers drift).
      const due = Math.floor(((Date.now() - started) / 1000) * rate) - sent;
      const pipe = redis.pipeline();
      for (let k = 0; k < due; k++) {
        const now = Date.now();
        const ns = NAMESPACE_BASE + BigInt(Math.floor(Math.random() * streams));
        pipe.publish(NAMESPACE_CHANNEL, JSON.stringify({ namespaceId: ns.toString(), cursor: String(now), at: now }));
        sent++;
      }
      void pipe.exec();
    }, 5);
  });
  await new Promise((r) => setTimeout(r, 1000));
  stop.abort();
  redis.disconnect();
  const sorted = [...latencies].sort((a, b) => a - b);
  const achieved = sent / seconds;
  return `${String(streams).padStart(6)} streams (open in ${openSeconds.toFixed(1)} s): ${achieved.toFixed(0)} notifications/s sent, ${latencies.length} delivered` +
    ` (${((100 * latencies.length) / sent).toFixed(1)}%), fan-out p50 ${percentile(sorted, 0.5)} ms p99 ${percentile(sorted, 0.99)} ms max ${sorted.at(-1)} ms${failed ? `; errors: ${failed}` : ""}`;
}

async function main(): Promise<void> {
  const levels = (process.argv[2] ?? "1000,5000,10000").split(",").map(Number);
  const rate = Number(process.argv[3] ?? 5000);
  const seconds = Number(process.argv[4] ?? 5);
  const config = loadClusterConfig();
  const endpoints = JSON.parse(readFileSync(join(config.stateDir, "cluster.json"), "utf8")) as ClusterEndpoints;
  for (const n of levels) {
    console.log(await level(endpoints, n, rate, seconds));
    await new Promise((r) => setTimeout(r, 2000));
  }
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
