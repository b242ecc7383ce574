import { createHash } from "node:crypto";
import { once } from "node:events";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescMethodStreaming, type DescMethodUnary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamResponse, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { HTTP2_WINDOW_BYTES, MAX_MESSAGE_BYTES } from "./limits.js";
import { RETRY_AFTER_HEADER } from "./rate-limits.js";
import { defaultTrust } from "./tls.js";

/**
 * A Connect `Transport` on a grpc-js channel, so `createClient(Service, transport)` call sites stay
 * as they are while each call costs what grpc-js costs: measured on this machine at 139 µs of
 * client CPU per unary call against 367 µs through connect-node's gRPC transport
 * (`ops/src/bench/rpc-runtime.ts`).
 *
 * A unary call a user's rate limit refused is sent again after the wait the server names (see
 * rate-limits.ts), within the call's deadline.
 *
 * What it does not do, because nothing here needs it: Connect interceptors, and response headers
 * of a stream before its first message (a stream's `header` holds what has arrived so far).
 */
export interface GrpcJsTransportOptions {
  /** e.g. "https://127.0.0.1:7301" (TLS) or "http://…" (plaintext) */
  baseUrl: string;
  /** PEM of the CA an https server's certificate must chain to; default: SATCHEL_TLS_CA's file, else the system's roots. */
  ca?: Buffer;
  /** Metadata added to every call, given the caller's; may wait (a token being refreshed). */
  decorate?: (metadata: grpc.Metadata) => void | Promise<void>;
}

/** The grpc-js channel options of every client: Satchel's message limits and windows, quick reconnects. */
export const CLIENT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  "grpc-node.flow_control_window": HTTP2_WINDOW_BYTES,
  // Services restart (deploys, tests, faults): reconnect within a second rather than grpc's
  // default back-off of up to two minutes, during which every call fails at once.
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
  // The servers accept a ping every 10 s; a dead peer is noticed within 25 s.
  "grpc.keepalive_time_ms": 15_000,
  "grpc.keepalive_timeout_ms": 10_000,
};

/** The headers a Connect client passes with a call (the Fetch API's HeadersInit). */
type CallHeader = ConstructorParameters<typeof Headers>[0];

interface MethodCodec {
  path: string;
  serialize(value: unknown): Buffer;
  deserialize(bytes: Buffer): unknown;
}

const codecs = new WeakMap<DescMethod, MethodCodec>();

function codecOf(method: DescMethod): MethodCodec {
  let codec = codecs.get(method);
  if (!codec) {
    const { input, output } = method;
    codec = {
      path: `/${method.parent.typeName}/${method.name}`,
      serialize(value) {
        const bytes = toBinary(input, isMessage(value, input) ? value : create(input, value as MessageInitShape<DescMessage>));
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      },
      deserialize: (bytes) => fromBinary(output, bytes),
    };
    codecs.set(method, codec);
  }
  return codec;
}

function targetOf(baseUrl: string, ca: Buffer | undefined): { target: string; credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const url = new URL(baseUrl);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error(`${baseUrl}: a Satchel service URL starts with https:// (or http:// in plaintext)`);
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const target = `${url.hostname}:${port}`;
  if (url.protocol === "http:") return { target, credentials: grpc.credentials.createInsecure(), options: CLIENT_CHANNEL_OPTIONS };
  const roots = ca ?? defaultTrust() ?? null;
  // grpc-js names the server in TLS SNI by the target's host even when it is an IP address, which
  // RFC 6066 forbids (Node warns on every CLI run). A loopback server is "localhost": name it so,
  // and still check its certificate against the address itself.
  const loopback = isLoopbackIp(url.hostname) ? url.hostname.replace(/^\[|\]$/g, "") : undefined;
  return {
    target,
    credentials: sslCredentials(roots, loopback),
    options: loopback ? { ...CLIENT_CHANNEL_OPTIONS, "grpc.ssl_target_name_override": "localhost" } : CLIENT_CHANNEL_OPTIONS,
  };
}

const credentialsCache = new Map<string, grpc.ChannelCredentials>();

/**
 * TLS channel credentials, one object per trusted CA and checked address: grpc-js shares a
 * connection between clients only when their credentials are the same object, so transports to
 * one server (an SDK client's, a test's many) share one TLS connection instead of each its own.
 */
function sslCredentials(roots: Buffer | null, loopback: string | undefined): grpc.ChannelCredentials {
  const key = `${roots ? createHash("sha256").update(roots).digest("hex") : "system roots"}|${loopback ?? ""}`;
  let credentials = credentialsCache.get(key);
  if (!credentials) {
    credentials = loopback
      ? grpc.credentials.createSsl(roots, null, null, { checkServerIdentity: (_name, cert) => checkServerIdentity(loopback, cert) })
      : grpc.credentials.createSsl(roots);
    credentialsCache.set(key, credentials);
  }
  return credentials;
}

function isLoopbackIp(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "");
  return (isIP(bare) === 4 && bare.startsWith("127.")) || bare === "::1";
}

function metadataOf(header: CallHeader): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (header) new Headers(header).forEach((value, key) => metadata.set(key, key.endsWith("-bin") ? Buffer.from(value, "base64") : value));
  return metadata;
}

/** grpc-js metadata as the Fetch API headers Connect hands to callers (binary values in base64). */
function headersOf(metadata: grpc.Metadata | undefined): Headers {
  const headers = new Headers();
  if (metadata) {
    for (const [key, value] of Object.entries(metadata.getMap())) headers.set(key, typeof value === "string" ? value : value.toString("base64"));
  }
  return headers;
}

/** A grpc-js error as the ConnectError Connect clients throw: the same code, message and metadata. */
export function connectErrorOf(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code === "number" && e.code > 0 && e.code <= 16) {
    // grpc-js ends a connection failure's message with an empty "Resolution note: ".
    let message = (e.details ?? e.message ?? "").replace(/\s*Resolution note:\s*$/, "");
    if (e.code === grpc.status.UNAVAILABLE && /certificate|self[- ]signed|local issuer/i.test(message)) {
      message += " (the server's TLS certificate is not trusted here: give the CA that signed it, e.g. SATCHEL_TLS_CA=<state dir>/tls/ca.crt)";
    }
    return new ConnectError(message, e.code as number as Code, headersOf(e.metadata));
  }
  return ConnectError.from(err);
}

/** A call a rate limit keeps refusing is given up after waiting this long in all. */
const RATE_LIMIT_PATIENCE_MS = 60_000;

/**
 * How long to wait before sending a call a rate limit refused (RESOURCE_EXHAUSTED with a
 * retry-after-ms trailer: it did nothing, so sending it again is safe), or undefined to give up:
 * any other error, a cancelled call, a wait past the call's deadline, or a minute of waiting. The
 * wait is spread (up to twice the server's) so that calls refused together do not return together.
 */
function rateLimitWait(err: ConnectError, waited: number, deadline: number | undefined, signal: AbortSignal | undefined): number | undefined {
  if (err.code !== Code.ResourceExhausted || signal?.aborted) return undefined;
  // Only a rate limit names a wait; other RESOURCE_EXHAUSTED (a quota, a message too large) are final.
  const header = err.metadata.get(RETRY_AFTER_HEADER);
  const named = header === null ? NaN : Number(header);
  if (!Number.isFinite(named) || named < 0) return undefined;
  const wait = Math.ceil(named * (1 + Math.random()));
  if (waited + wait > RATE_LIMIT_PATIENCE_MS) return undefined;
  if (deadline !== undefined && Date.now() + wait >= deadline) return undefined;
  return wait;
}

function callOptions(timeoutMs: number | undefined): grpc.CallOptions {
  return timeoutMs !== undefined && timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {};
}

/** Cancels the call when the signal aborts; returns the undo. */
function cancelOn(signal: AbortSignal | undefined, call: grpc.Call): () => void {
  if (!signal) return () => undefined;
  const cancel = () => call.cancel();
  if (signal.aborted) cancel();
  else signal.addEventListener("abort", cancel, { once: true });
  return () => signal.removeEventListener("abort", cancel);
}

export function createGrpcJsTransport(opts: GrpcJsTransportOptions): Transport {
  const { target, credentials, options } = targetOf(opts.baseUrl, opts.ca);
  const client = new grpc.Client(target, credentials, options);
  const decorate = opts.decorate;

  async function metadataFor(header: CallHeader): Promise<grpc.Metadata> {
    const metadata = metadataOf(header);
    if (decorate) await decorate(metadata);
    return metadata;
  }

  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: CallHeader,
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      const codec = codecOf(method);
      const metadata = await metadataFor(header);
      const options = callOptions(timeoutMs);
      let responseMetadata: grpc.Metadata | undefined;
      let trailerMetadata: grpc.Metadata | undefined;
      const attemptCall = () => new Promise<MessageShape<O>>((resolve, reject) => {
        const call = client.makeUnaryRequest(codec.path, codec.serialize, codec.deserialize, input, metadata, options, (err, value) => {
          undo();
          if (err) reject(connectErrorOf(err));
          else resolve(value as MessageShape<O>);
        });
        const undo = cancelOn(signal, call);
        call.on("metadata", (m) => (responseMetadata = m));
        call.on("status", (s) => (trailerMetadata = s.metadata));
      });
      let message: MessageShape<O>;
      for (let waited = 0; ; ) {
        try {
          message = await attemptCall();
          break;
        } catch (err) {
          const wait = rateLimitWait(err as ConnectError, waited, options.deadline as number | undefined, signal);
          if (wait === undefined) throw err;
          waited += wait;
          await new Promise((r) => setTimeout(r, wait));
        }
      }
      return {
        stream: false,
        service: method.parent,
        method,
        message,
        get header() {
          return headersOf(responseMetadata);
        },
        get trailer() {
          return headersOf(trailerMetadata);
        },
      };
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: CallHeader,
      input: AsyncIterable<MessageInitShape<I>>,
    ): Promise<StreamResponse<I, O>> {
      const codec = codecOf(method);
      const metadata = await metadataFor(header);
      // On the wire every streaming kind is a stream each way; the method's kind is the server's.
      const call = client.makeBidiStreamRequest(codec.path, codec.serialize, codec.deserialize, metadata, callOptions(timeoutMs));
      const undo = cancelOn(signal, call);
      let responseMetadata: grpc.Metadata | undefined;
      let trailerMetadata: grpc.Metadata | undefined;
      call.on("metadata", (m) => (responseMetadata = m));
      call.on("status", (s) => (trailerMetadata = s.metadata));
      // grpc-js ends the stream and then emits its error, which a reader that has not started
      // yet would miss: it is kept and thrown after the last message.
      let failure: unknown;
      call.on("error", (err) => (failure = err));
      void (async () => {
        for await (const m of input) if (!call.write(m)) await once(call, "drain");
        call.end();
      })().catch(() => call.cancel());
      async function* messages(): AsyncGenerator<MessageShape<O>> {
        try {
          for await (const m of call) yield m as MessageShape<O>;
          if (failure) throw failure;
        } catch (err) {
          throw connectErrorOf(err);
        } finally {
          undo();
          // A reader that stops early ends the call; after its status this does nothing.
          call.cancel();
        }
      }
      return {
        stream: true,
        service: method.parent,
        method,
        message: messages(),
        get header() {
          return headersOf(responseMetadata);
        },
        get trailer() {
          return headersOf(trailerMetadata);
        },
      };
    },
  };
}
