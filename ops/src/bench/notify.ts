#!/usr/bin/env node
/**
 * Notifyserver fan-out benchmark against a running local cluster (bash ops/up.sh): for each
 * number of concurrent Subscribe streams (each watching its own namespace, 100 streams per HTTP/2
 * connection, opened with the service token by stock grpc-js clients), publish namespace advances on Redis at a fixed
 * rate to random watched namespaces, exactly as metaservers do, and measure the fan-out latency
 * from publish to the event arriving on the stream (p50/p99), how many were delivered, and the
 * notifyserver's CPU (share of one core while publishing) and resident memory (from its metrics).
 *   node ops/dist/bench/notify.js [streams=1000,5000,10000] [rate/s=5000] [seconds=5]
 */
import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { NAMESPACE_CHANNEL, redisTls } from "@satchel/proto";
import { SubscribeRequestSchema, SubscribeResponseSchema, type SubscribeRequest, type SubscribeResponse } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { readClusterFile, type ClusterEndpoints } from "../cluster/cluster.js";
import { grpcCredentialsOf } from "../cluster/trust.js";
import { loadClusterConfig } from "../config.js";
import { figureLine } from "./figures.js";

const STREAMS_PER_CONNECTION = 100;
const NAMESPACE_BASE = 1_000_000_000n;
/** The notifyserver's CPU seconds so far and resident bytes now, from its Prometheus metrics. */
async function serverUsage(endpoints: ClusterEndpoints): Promise<{ cpu: number; rss: number }> {
  const text = await (await fetch(endpoints.metrics.notifyserver)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
  return { cpu: value("process_cpu_seconds_total"), rss: value("process_resident_memory_bytes") };
}

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN);

async function level(endpoints: ClusterEndpoints, streams: number, rate: number, seconds: number): Promise<string> {
  const latencies: number[] = [];
  let opened = 0;
  let failed = "";
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  // Stock grpc-js clients (the lightest Node client here): the measurement is of the server.
  const clients = Array.from({ length: Math.ceil(streams / STREAMS_PER_CONNECTION) }, () =>
    new grpc.Client(new URL(endpoints.notifyserver).host, grpcCredentialsOf(endpoints), { "grpc.use_local_subchannel_pool": 1 }));
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${endpoints.serviceToken}`);
  const calls: grpc.ClientReadableStream<SubscribeResponse>[] = [];
  const ready = new Promise<void>((resolve) => {
    for (let i = 0; i < streams; i++) {
      const ns = NAMESPACE_BASE + BigInt(i);
      let first = true;
      const call = clients[Math.floor(i / STREAMS_PER_CONNECTION)].makeServerStreamRequest(
        "/satchel.notify.v1.NotifyService/Subscribe",
        (r: SubscribeRequest) => Buffer.from(toBinary(SubscribeRequestSchema, r)),
        (b: Buffer) => fromBinary(SubscribeResponseSchema, b),
        create(SubscribeRequestSchema, { namespaceIds: [ns] }), md,
      );
      call.on("data", (ev: SubscribeResponse) => {
        if (first) {
          first = false;
          if (++opened === streams) resolve();
        }
        if (ev.event.case === "advanced") latencies.push(Date.now() - Number(ev.event.value.cursor));
      });
      call.on("error", (err: grpc.ServiceError) => {
        if (!stop.signal.aborted && !failed) failed = err.message;
      });
      calls.push(call);
    }
  });
  stop.signal.addEventListener("abort", () => {
    for (const c of calls) c.cancel();
    for (const c of clients) c.close();
  });
  const opening = performance.now();
  await Promise.race([ready, new Promise((r) => setTimeout(r, 60_000))]);
  const openSeconds = (performance.now() - opening) / 1000;
  if (opened < streams) {
    stop.abort();
    return `${String(streams).padStart(6)} streams: only ${opened} opened in 60 s${failed ? ` (${failed})` : ""}`;
  }
  // Publish as metaservers do; the cursor carries the send time so receivers can measure latency.
  const redis = new Redis(endpoints.redisUrl, redisTls(endpoints.redisUrl, undefined));
  let sent = 0;
  const before = await serverUsage(endpoints);
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
  const publishing = (Date.now() - started) / 1000;
  const after = await serverUsage(endpoints);
  await new Promise((r) => setTimeout(r, 1000));
  stop.abort();
  redis.disconnect();
  const sorted = [...latencies].sort((a, b) => a - b);
  const achieved = sent / seconds;
  console.log(figureLine("satchel", `notify_${streams}_streams_p50_ms`, percentile(sorted, 0.5), "ms"));
  console.log(figureLine("satchel", `notify_${streams}_streams_p99_ms`, percentile(sorted, 0.99), "ms"));
  console.log(figureLine("satchel", `notify_${streams}_streams_delivered_pct`, (100 * latencies.length) / sent, "%"));
  return `${String(streams).padStart(6)} streams (open in ${openSeconds.toFixed(1)} s): ${achieved.toFixed(0)} notifications/s sent, ${latencies.length} delivered` +
    ` (${((100 * latencies.length) / sent).toFixed(1)}%), fan-out p50 ${percentile(sorted, 0.5)} ms p99 ${percentile(sorted, 0.99)} ms max ${sorted.at(-1)} ms; ` +
    `notifyserver ${((100 * (after.cpu - before.cpu)) / publishing).toFixed(0)}% of a core, RSS ${(after.rss / 2 ** 20).toFixed(0)} MiB${failed ? `; errors: ${failed}` : ""}`;
}

async function main(): Promise<void> {
  const levels = (process.argv[2] ?? "1000,5000,10000").split(",").map(Number);
  const rate = Number(process.argv[3] ?? 5000);
  const seconds = Number(process.argv[4] ?? 5);
  const config = loadClusterConfig();
  const endpoints = readClusterFile(config.stateDir);
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
