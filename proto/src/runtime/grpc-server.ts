import { once } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { CallPipeline, OpenCall } from "./call-pipeline.js";
import { clientAddressKey, currentRequest, REQUEST_ID_HEADER } from "./interceptors.js";

/** What a service's routes register: handlers written once, served by grpc-js and connect-node alike. */
export interface ServiceRouter {
  service<T extends DescService>(service: T, implementation: Partial<ServiceImpl<T>>): unknown;
}

/** A ServiceRouter that keeps what was registered, for the grpc-js server. */
export class ServiceRegistry implements ServiceRouter {
  readonly services: { desc: DescService; impl: Partial<ServiceImpl<DescService>> }[] = [];

  service<T extends DescService>(service: T, implementation: Partial<ServiceImpl<T>>): this {
    this.services.push({ desc: service, impl: implementation as Partial<ServiceImpl<DescService>> });
    return this;
  }
}

/** Bytes of messages encoded ahead of time (see encodeOnce). */
const preEncoded = new WeakMap<object, Buffer>();

/**
 * Encodes a message now and remembers its bytes, so that writing the same object to thousands of
 * streams (a notification fanned out) serializes it once. The object must not change afterwards.
 */
export function encodeOnce<T extends DescMessage>(schema: T, message: MessageShape<T>): MessageShape<T> {
  preEncoded.set(message, asBuffer(toBinary(schema, message)));
  return message;
}

const cancelledError = () => new ConnectError("the client cancelled the call", Code.Canceled);

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** Handlers may return a message's init object, as connect-node allows. */
function serializer(schema: DescMessage): (value: unknown) => Buffer {
  return (value) => preEncoded.get(value as object) ?? asBuffer(toBinary(schema, isMessage(value, schema) ? value : create(schema, value as never)));
}

/** The grpc-js service definition of a protobuf-es service: no second code generator. */
function definitionOf(desc: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of desc.methods) {
    def[m.localName] = {
      path: `/${desc.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: serializer(m.input),
      requestDeserialize: (buf: Buffer) => fromBinary(m.input, buf),
      responseSerialize: serializer(m.output),
      responseDeserialize: (buf: Buffer) => fromBinary(m.output, buf),
    };
  }
  return def;
}

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

/** The status grpc-js sends for a failed call, with the error's metadata as trailers. */
function serviceError(status: ConnectError, ctx: GrpcHandlerContext): Partial<grpc.StatusObject> {
  const metadata = ctx.trailerMetadata() ?? new grpc.Metadata();
  status.metadata.forEach((value, key) => metadata.add(key, value));
  return { code: status.code as number as grpc.status, details: status.rawMessage, metadata };
}

/**
 * One call's HandlerContext, as connect-node would give it, built from the grpc-js call. Headers
 * are built only when a handler asks for them; the signal aborts when the client cancels (or the
 * deadline passes) and when the server shuts down.
 */
class GrpcHandlerContext implements HandlerContext {
  readonly values = createContextValues();
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  private controller?: AbortController;
  private headers?: Headers;
  /** The client went away, or the deadline passed: nothing more can be sent. */
  cancelled = false;
  private dispose?: () => void;
  private outHeader?: Headers;
  private outTrailer?: Headers;

  constructor(readonly service: DescService, readonly method: DescMethod, private readonly call: AnyCall, private readonly shutdown: AbortSignal) {
    (call as grpc.ServerUnaryCall<unknown, unknown>).once("cancelled", () => {
      this.cancelled = true;
      this.controller?.abort(cancelledError());
    });
  }

  get url(): string {
    return `/${this.service.typeName}/${this.method.name}`;
  }

  get peer() {
    return { addr: this.call.getPeer() };
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      if (this.cancelled) controller.abort(cancelledError());
      const stop = () => controller.abort(this.shutdown.reason);
      if (this.shutdown.aborted) stop();
      else {
        this.shutdown.addEventListener("abort", stop, { once: true });
        this.dispose = () => this.shutdown.removeEventListener("abort", stop);
      }
    }
    return this.controller.signal;
  }

  /** The call is over: it stops listening to the server's shutdown. */
  done(): void {
    this.dispose?.();
  }

  timeoutMs(): number | undefined {
    const deadline = this.call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
  }

  get requestHeader(): Headers {
    if (!this.headers) {
      this.headers = new Headers();
      for (const [key, value] of Object.entries(this.call.metadata.getMap())) {
        if (typeof value === "string") this.headers.set(key, value);
      }
    }
    return this.headers;
  }

  /** Headers a handler sends before its response; made only when it asks. */
  get responseHeader(): Headers {
    return (this.outHeader ??= new Headers());
  }

  /** Headers a handler sends with the call's status; made only when it asks. */
  get responseTrailer(): Headers {
    return (this.outTrailer ??= new Headers());
  }

  /** The response headers a handler set, onto the metadata sent before the response. */
  addResponseHeaders(md: grpc.Metadata): void {
    this.outHeader?.forEach((value, key) => md.set(key, value));
  }

  /** The trailers a handler set, as the metadata sent with the status; none when it set none. */
  trailerMetadata(): grpc.Metadata | undefined {
    if (!this.outTrailer) return undefined;
    const md = new grpc.Metadata();
    this.outTrailer.forEach((value, key) => md.set(key, value));
    return md;
  }

  /** The first value of a request header (metadata), without building Headers. */
  header(name: string): string | undefined {
    const v = this.call.metadata.get(name)[0];
    return typeof v === "string" ? v : undefined;
  }
}

/** The host of a grpc-js peer ("127.0.0.1:5000", "[::1]:5000", "ipv4:127.0.0.1:5000"): the client's address. */
export function peerHost(peer: string): string {
  if (peer.startsWith("unix:")) return peer;
  const p = peer.replace(/^ipv[46]:/, "");
  if (p.startsWith("[")) return p.slice(1, p.indexOf("]"));
  const colon = p.lastIndexOf(":");
  return colon > 0 && p.indexOf(":") === colon ? p.slice(0, colon) : p;
}

/** Sends the response headers (the request id, and any the handler set) once. */
function sendHeaders(call: AnyCall, ctx: GrpcHandlerContext, open: OpenCall): void {
  const md = new grpc.Metadata();
  md.set(REQUEST_ID_HEADER, open.requestId);
  ctx.addResponseHeaders(md);
  call.sendMetadata(md);
}

/** Writes one message, waiting while the stream's buffer is full (or until the client goes away). */
async function write(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, message: unknown, ctx: GrpcHandlerContext): Promise<void> {
  if (ctx.cancelled) throw cancelledError();
  if (call.write(message)) return;
  const ac = new AbortController();
  await Promise.race([once(call, "drain", { signal: ac.signal }), once(call, "cancelled", { signal: ac.signal })]).catch(() => undefined);
  ac.abort();
  if (ctx.cancelled) throw cancelledError();
}

/**
 * A client stream's messages as the async iterable a handler takes. Not destroyed at its end: a
 * duplex stream destroyed when its reading side ends would never send the call's status.
 */
function requests(call: grpc.ServerReadableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>): AsyncIterable<unknown> {
  return call.iterator({ destroyOnReturn: false });
}

/**
 * The grpc-js handlers of one service: each call goes through the pipeline (request id, metrics,
 * logs, authentication), then the handler, in the request's async context.
 */
function handlersOf(desc: DescService, impl: Partial<ServiceImpl<DescService>>, pipeline: CallPipeline, shutdown: AbortSignal): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const m of desc.methods) {
    const fn = (impl as Record<string, unknown>)[m.localName] as ((req: unknown, ctx: HandlerContext) => unknown) | undefined;
    const begin = (call: AnyCall) => {
      const ctx = new GrpcHandlerContext(desc, m, call, shutdown);
      ctx.values.set(clientAddressKey, peerHost(call.getPeer()));
      const open = pipeline.start({ service: desc.typeName, method: `${desc.typeName}/${m.name}`, header: (n) => ctx.header(n), values: ctx.values });
      return { ctx, open };
    };
    const unimplemented = () => new ConnectError(`${desc.typeName}/${m.name} is not implemented`, Code.Unimplemented);
    switch (m.methodKind) {
      case "unary":
      case "client_streaming":
        out[m.localName] = (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          const { ctx, open } = begin(call);
          const input = m.methodKind === "unary" ? (call as grpc.ServerUnaryCall<unknown, unknown>).request : requests(call as grpc.ServerReadableStream<unknown, unknown>);
          const run = async () => {
            await open.authorize();
            if (!fn) throw unimplemented();
            return currentRequest.run({ requestId: open.requestId }, () => fn(input, ctx));
          };
          run().then(
            (res) => {
              ctx.done();
              open.end();
              sendHeaders(call, ctx, open);
              callback(null, res, ctx.trailerMetadata());
            },
            (err: unknown) => {
              ctx.done();
              callback(serviceError(open.end(err)!, ctx));
            },
          );
        };
        break;
      case "server_streaming":
      case "bidi_streaming":
        out[m.localName] = (call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>) => {
          const { ctx, open } = begin(call);
          const input = m.methodKind === "server_streaming" ? (call as grpc.ServerWritableStream<unknown, unknown>).request : requests(call as grpc.ServerDuplexStream<unknown, unknown>);
          const run = async () => {
            await open.authorize();
            if (!fn) throw unimplemented();
            sendHeaders(call, ctx, open);
            await currentRequest.run({ requestId: open.requestId }, async () => {
              for await (const message of fn(input, ctx) as AsyncIterable<unknown>) await write(call, message, ctx);
            });
          };
          run().then(
            () => {
              ctx.done();
              open.end();
              if (!ctx.cancelled) call.end(ctx.trailerMetadata());
            },
            (err: unknown) => {
              ctx.done();
              const status = open.end(err)!;
              if (!ctx.cancelled) call.emit("error", serviceError(status, ctx));
            },
          );
        };
        break;
    }
  }
  return out;
}

export interface GrpcServerOptions {
  services: ServiceRegistry;
  pipeline: CallPipeline;
  shutdown: AbortSignal;
  maxMessageBytes: number;
  /** HTTP/2 flow-control window, per stream and per connection. */
  windowBytes: number;
  sessionMemoryMb: number;
}

/**
 * A grpc-js server for the registered services: message limits, keep-alive (pings every 30 s;
 * clients may ping every 10 s), and connections recycled after 30 minutes with a 30 s grace to
 * drain, so load spreads again after a server restarts.
 */
export function createGrpcServer(opts: GrpcServerOptions): grpc.Server {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.maxMessageBytes,
    "grpc.max_send_message_length": opts.maxMessageBytes,
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 10_000,
    "grpc.max_connection_age_ms": 30 * 60_000,
    "grpc.max_connection_age_grace_ms": 30_000,
    "grpc-node.max_session_memory": opts.sessionMemoryMb,
  });
  for (const { desc, impl } of opts.services.services) server.addService(definitionOf(desc), handlersOf(desc, impl, opts.pipeline, opts.shutdown));
  return server;
}

/**
 * Widens the HTTP/2 flow-control windows of a bound grpc-js server. grpc-js has no server option
 * for them, and at the protocol's 64 KiB a 16 MiB block crosses in hundreds of round trips. It
 * reaches the server's HTTP/2 listeners, which grpc-js keeps in a private field: when a version
 * changes that, the windows stay at their defaults (slower, still correct) and this says so.
 */
export function widenWindows(server: grpc.Server, windowBytes: number): boolean {
  const listeners = (server as unknown as { http2Servers?: Map<{ on: (e: string, f: (s: { setLocalWindowSize(n: number): void }) => void) => void; updateSettings?: (s: object) => void }, unknown> }).http2Servers;
  if (!(listeners instanceof Map)) return false;
  for (const http2Server of listeners.keys()) {
    http2Server.updateSettings?.({ initialWindowSize: windowBytes });
    http2Server.on("session", (session) => session.setLocalWindowSize(windowBytes));
  }
  return listeners.size > 0;
}
