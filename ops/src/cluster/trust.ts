import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as grpc from "@grpc/grpc-js";
import { clientTlsOptions, mysqlTls } from "@satchel/proto";

/** The part of a cluster's endpoints that says how its servers are trusted. */
export interface ClusterTrust {
  /** The CA file of the cluster's certificates; absent for a plaintext cluster. */
  ca?: string;
}

/**
 * Makes this process trust a cluster's CA wherever no CA is passed: Satchel's gRPC clients,
 * Redis (rediss://) and MinIO clients and HTTPS requests read SATCHEL_TLS_CA (see tls.ts). For
 * tests, benchmarks and tools that reach one local cluster; child processes inherit it.
 */
export function trustClusterCa(trust: ClusterTrust): void {
  if (trust.ca) process.env.SATCHEL_TLS_CA = trust.ca;
}

const cas = new Map<string, Buffer>();

/** The cluster's CA certificate (read once), or undefined for a plaintext cluster. */
export function caOf(trust: ClusterTrust): Buffer | undefined {
  if (!trust.ca) return undefined;
  let pem = cas.get(trust.ca);
  if (!pem) cas.set(trust.ca, (pem = readFileSync(trust.ca)));
  return pem;
}

/** Channel credentials of a stock grpc-js client of the cluster: TLS trusting its CA, or plaintext. */
export function grpcCredentialsOf(trust: ClusterTrust): grpc.ChannelCredentials {
  const ca = caOf(trust);
  return ca ? grpc.credentials.createSsl(ca) : grpc.credentials.createInsecure();
}

/** mysql2's `ssl` option for a connection to the cluster's MariaDB servers (nothing in plaintext). */
export function mysqlTlsOf(trust: ClusterTrust): ReturnType<typeof mysqlTls> {
  const ca = caOf(trust);
  return ca ? mysqlTls({ ca }) : {};
}

export interface HttpAnswer {
  status: number;
  type: string;
  body: Buffer;
  headers: http.IncomingHttpHeaders;
}

/**
 * A GET of an http or https URL, the https server's certificate checked against `ca` (default:
 * SATCHEL_TLS_CA's file): what `fetch` cannot do, as it takes no CA of its own. `localAddress`
 * sends it from another loopback address (127.0.0.2, say), as another client would.
 */
export function httpGet(url: string, ca?: Buffer, timeoutMs = 15_000, localAddress?: string): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const done = (res: http.IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks), headers: res.headers }));
      res.on("error", reject);
    };
    const req = url.startsWith("https:")
      ? https.get(url, { ...clientTlsOptions(ca), agent: false, timeout: timeoutMs, localAddress }, done)
      : http.get(url, { agent: false, timeout: timeoutMs, localAddress }, done);
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}
