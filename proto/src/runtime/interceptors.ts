import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "./logger.js";
import { codeName } from "./metrics.js";

/** Who is calling: a user (from an access token) or another Satchel service. */
export interface Principal {
  kind: "user" | "service";
  userId: string;
  username?: string;
  deviceId?: string;
  deviceName?: string;
}

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated caller" });
export const requestIdKey = createContextKey<string>("", { description: "request id" });
export const loggerKey = createContextKey<Logger | undefined>(undefined, { description: "request logger" });

export const REQUEST_ID_HEADER = "x-request-id";

/** The request id of the call being handled, for calls it makes to other services (see transport.ts). */
export const currentRequest = new AsyncLocalStorage<{ requestId: string }>();

/** Services every caller may use without a token: health checking and reflection. */
export const PUBLIC_SERVICES = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/**
 * Gives every call a request id (the caller's x-request-id, or a new one), echoes it back, and logs
 * the call's outcome as one structured line with that id.
 */
export function requestContextInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const requestId = req.header.get(REQUEST_ID_HEADER) || randomUUID();
    const method = `${req.service.typeName}/${req.method.name}`;
    const log = logger.child({ requestId, method });
    req.contextValues.set(requestIdKey, requestId);
    req.contextValues.set(loggerKey, log);
    const started = performance.now();
    try {
      const res = await currentRequest.run({ requestId }, () => next(req));
      res.header.set(REQUEST_ID_HEADER, requestId);
      if (!res.stream) log.debug({ ms: performance.now() - started }, "rpc ok");
      return res;
    } catch (err) {
      const ce = ConnectError.from(err);
      const level = ce.code === Code.Internal || ce.code === Code.Unknown ? "error" : "info";
      log[level]({ ms: performance.now() - started, code: codeName(ce.code), err: ce.rawMessage }, "rpc failed");
      ce.metadata.set(REQUEST_ID_HEADER, requestId);
      throw ce;
    }
  };
}

export type TokenVerifier = (token: string) => Promise<Principal> | Principal;

export interface AuthOptions {
  verify: TokenVerifier;
  /** Methods ("pkg.Service/Method") anyone may call without a token, besides PUBLIC_SERVICES. */
  publicMethods?: Set<string>;
  /** Services or methods only the service token may call (operators and other Satchel services). */
  serviceOnly?: Set<string>;
}

/**
 * The one place every RPC is authenticated: a missing, expired, forged or wrongly-signed token is
 * UNAUTHENTICATED; a user calling a service-only method is PERMISSION_DENIED.
 */
export function authInterceptor(opts: AuthOptions): Interceptor {
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = `${service}/${req.method.name}`;
    if (PUBLIC_SERVICES.has(service) || opts.publicMethods?.has(method)) return next(req);
    const header = req.header.get("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) {
      throw new ConnectError('missing credentials: send the header "authorization: Bearer <token>"', Code.Unauthenticated);
    }
    let principal: Principal;
    try {
      principal = await opts.verify(match[1]);
    } catch (err) {
      const ce = ConnectError.from(err);
      throw ce.code === Code.Unauthenticated ? ce : new ConnectError(`invalid token: ${ce.rawMessage}`, Code.Unauthenticated);
    }
    if (principal.kind !== "service" && (opts.serviceOnly?.has(service) || opts.serviceOnly?.has(method))) {
      throw new ConnectError(`${method} is for Satchel services and operators: call it with the service token`, Code.PermissionDenied);
    }
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}
