#!/usr/bin/env node
/**
 * Sign-in flood benchmark against a running local cluster (bash ops/up.sh; its default limits):
 * first a quiet phase, then a flood of wrong-password logins from one client address (127.0.0.2,
 * `workers` at a time, against many accounts), bounded in time. In both phases a real user signs
 * in now and then from another address (127.0.0.3) and another user lists a folder in a loop
 * (127.0.0.4). Reports guesses the platform answered per second (accepted: UNAUTHENTICATED, i.e.
 * a password was tried) and refused (RESOURCE_EXHAUSTED), the real user's sign-in latency, the
 * other user's call latency p50/p99, and the metaserver's peak resident memory, flood vs quiet.
 *   node ops/dist/bench/signin-flood.js [seconds=15] [workers=64]
 */
import { randomBytes } from "node:crypto";
import type { SecureClientSessionOptions } from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService } from "@satchel/proto/gen/satchel/meta/v1/auth_pb.js";
import { MetaService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { readClusterFile, type ClusterEndpoints } from "../cluster/cluster.js";
import { caOf } from "../cluster/trust.js";
import { loadClusterConfig } from "../config.js";

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))] : NaN;
};

function clientsFrom(endpoints: ClusterEndpoints, localAddress: string, token?: string) {
  const transport = createGrpcTransport({
    // localAddress reaches the socket (http2.connect passes its options to tls.connect); the type omits it.
    baseUrl: endpoints.metaserver, nodeOptions: { ca: caOf(endpoints), localAddress } as SecureClientSessionOptions,
    interceptors: token ? [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] : [],
  });
  return { auth: createClient(AuthService, transport), meta: createClient(MetaService, transport) };
}

async function rss(endpoints: ClusterEndpoints): Promise<number> {
  const text = await (await fetch(endpoints.metrics.metaserver)).text();
  return Number(/^process_resident_memory_bytes (\S+)$/m.exec(text)?.[1] ?? NaN);
}

interface Phase {
  seconds: number;
  accepted: number;
  refused: number;
  other: number;
  signIns: number[];
  calls: number[];
  peakRss: number;
}

async function phase(endpoints: ClusterEndpoints, user: { username: string; password: string }, lister: string, seconds: number, workers: number): Promise<Phase> {
  const out: Phase = { seconds, accepted: 0, refused: 0, other: 0, signIns: [], calls: [], peakRss: 0 };
  const until = Date.now() + seconds * 1000;
  const flooder = clientsFrom(endpoints, "127.0.0.2").auth;
  const flood = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; Date.now() < until; i++) {
      try {
        await flooder.login({ username: `flood-${w}-${i % 50}`, password: randomBytes(8).toString("hex"), deviceName: "guess" });
        out.other++;
      } catch (err) {
        const code = ConnectError.from(err).code;
        if (code === Code.Unauthenticated) out.accepted++;
        else if (code === Code.ResourceExhausted) out.refused++;
        else out.other++;
      }
    }
  });
  const real = clientsFrom(endpoints, "127.0.0.3").auth;
  const signing = (async () => {
    while (Date.now() < until) {
      const t = performance.now();
      await real.login({ username: user.username, password: user.password, deviceName: "bench" });
      out.signIns.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const other = clientsFrom(endpoints, "127.0.0.4", lister).meta;
  const listing = (async () => {
    while (Date.now() < until) {
      const t = performance.now();
      await other.listFolder({ path: "/" });
      out.calls.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const sampling = (async () => {
    while (Date.now() < until) {
      out.peakRss = Math.max(out.peakRss, await rss(endpoints));
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  await Promise.all([...flood, signing, listing, sampling]);
  return out;
}

const describe = (name: string, p: Phase) =>
  `${name}: guesses answered ${(p.accepted / p.seconds).toFixed(1)}/s, refused ${(p.refused / p.seconds).toFixed(1)}/s` +
  `${p.other ? `, other outcomes ${p.other}` : ""}; real sign-in p50 ${percentile(p.signIns, 0.5).toFixed(0)} ms max ${Math.max(...p.signIns).toFixed(0)} ms` +
  ` (${p.signIns.length}); other user's ListFolder p50 ${percentile(p.calls, 0.5).toFixed(1)} ms p99 ${percentile(p.calls, 0.99).toFixed(1)} ms` +
  ` (${p.calls.length}); metaserver peak RSS ${(p.peakRss / 2 ** 20).toFixed(0)} MiB`;

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 15);
  const workers = Number(process.argv[3] ?? 64);
  const endpoints = readClusterFile(loadClusterConfig().stateDir);
  const signup = clientsFrom(endpoints, "127.0.0.5").auth;
  const make = async (name: string) => {
    const account = { username: `${name}-${randomBytes(4).toString("hex")}`, password: randomBytes(12).toString("base64url") };
    await signup.createAccount(account);
    return account;
  };
  const user = await make("bench-user");
  const lister = await make("bench-lister");
  const { tokens } = await clientsFrom(endpoints, "127.0.0.4").auth.login({ ...lister, deviceName: "bench" });
  const quiet = await phase(endpoints, user, tokens!.accessToken, seconds, 0);
  console.log(describe("quiet", quiet));
  const flood = await phase(endpoints, user, tokens!.accessToken, seconds, workers);
  console.log(describe(`flood (${workers} at a time from 127.0.0.2)`, flood));
  console.log(`flood vs quiet: real sign-in p50 ×${(percentile(flood.signIns, 0.5) / percentile(quiet.signIns, 0.5)).toFixed(2)}, ` +
    `other user's p99 ×${(percentile(flood.calls, 0.99) / percentile(quiet.calls, 0.99)).toFixed(2)}, peak RSS ×${(flood.peakRss / quiet.peakRss).toFixed(2)}`);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
