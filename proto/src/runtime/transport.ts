import type { Transport } from "@connectrpc/connect";
import { createGrpcJsTransport } from "./grpc-transport.js";
import { currentRequest, REQUEST_ID_HEADER } from "./interceptors.js";

export interface TransportOptions {
  /** e.g. "https://127.0.0.1:7301" (or "http://…" for a plaintext development cluster) */
  baseUrl: string;
  /** PEM of the CA the service's certificate chains to; default: the file SATCHEL_TLS_CA names, else the system's roots. */
  ca?: Buffer;
  /** Bearer token sent with every call, or a function that yields a current one (refreshing tokens). */
  token?: string | (() => Promise<string>);
}

/**
 * The gRPC client transport of the SDK and of every service calling another: grpc-js under
 * Connect's typed clients (see grpc-transport.ts for why), with Satchel's limits, the caller's
 * token, and the request id of the call being handled, so logs join up across services.
 */
export function createSatchelTransport(opts: TransportOptions): Transport {
  const token = opts.token;
  return createGrpcJsTransport({
    baseUrl: opts.baseUrl,
    ca: opts.ca,
    decorate(metadata) {
      const current = currentRequest.getStore();
      if (current && metadata.get(REQUEST_ID_HEADER).length === 0) metadata.set(REQUEST_ID_HEADER, current.requestId);
      if (typeof token === "string") metadata.set("authorization", `Bearer ${token}`);
      else if (token) return token().then((t) => void metadata.set("authorization", `Bearer ${t}`));
    },
  });
}
