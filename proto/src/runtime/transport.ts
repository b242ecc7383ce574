import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { HTTP2_SESSION_MEMORY_MB, MAX_MESSAGE_BYTES } from "./limits.js";

export interface TransportOptions {
  /** e.g. "http://127.0.0.1:7301" */
  baseUrl: string;
  /** Bearer token sent with every call. */
  token?: string;
  interceptors?: Interceptor[];
}

/** A gRPC-over-HTTP/2 client transport with Satchel's message limits and session memory. */
export function createSatchelTransport(opts: TransportOptions): Transport {
  const auth: Interceptor[] = opts.token
    ? [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${opts.token}`);
          return next(req);
        },
      ]
    : [];
  return createGrpcTransport({
    baseUrl: opts.baseUrl,
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    nodeOptions: { maxSessionMemory: HTTP2_SESSION_MEMORY_MB },
    pingIntervalMs: 15_000,
    interceptors: [...auth, ...(opts.interceptors ?? [])],
  });
}
