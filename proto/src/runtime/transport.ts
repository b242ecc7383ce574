import type * as http2 from "node:http2";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { currentRequest, REQUEST_ID_HEADER } from "./interceptors.js";
import { HTTP2_SESSION_MEMORY_MB, HTTP2_WINDOW_BYTES, MAX_MESSAGE_BYTES } from "./limits.js";

export interface TransportOptions {
  /** e.g. "http://127.0.0.1:7301" */
  baseUrl: string;
  /** Bearer token sent with every call, or a function that yields a current one (refreshing tokens). */
  token?: string | (() => Promise<string>);
  interceptors?: Interceptor[];
}

/**
 * A session manager that widens each new HTTP/2 connection's receive window. Node offers no
 * option for the connection-level window (only per stream), and at 64 KiB a 4 MiB response needs
 * dozens of WINDOW_UPDATE round trips.
 */
class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.Http2Session>();

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(HTTP2_WINDOW_BYTES);
    }
    return stream;
  }
}

/** A gRPC-over-HTTP/2 client transport with Satchel's message limits and flow-control windows. */
export function createSatchelTransport(opts: TransportOptions): Transport {
  const token = opts.token;
  // A call made while handling another carries that call's request id, so logs join up across services.
  const requestId: Interceptor = (next) => (req) => {
    const current = currentRequest.getStore();
    if (current && !req.header.has(REQUEST_ID_HEADER)) req.header.set(REQUEST_ID_HEADER, current.requestId);
    return next(req);
  };
  const auth: Interceptor[] = token
    ? [
        (next) => async (req) => {
          req.header.set("authorization", `Bearer ${typeof token === "string" ? token : await token()}`);
          return next(req);
        },
      ]
    : [];
  const sessionManager = new WideWindowSessionManager(
    opts.baseUrl,
    { pingIntervalMs: 15_000 },
    { maxSessionMemory: HTTP2_SESSION_MEMORY_MB, settings: { initialWindowSize: HTTP2_WINDOW_BYTES } },
  );
  return createGrpcTransport({
    baseUrl: opts.baseUrl,
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    sessionManager,
    acceptCompression: [],
    interceptors: [requestId, ...auth, ...(opts.interceptors ?? [])],
  });
}
