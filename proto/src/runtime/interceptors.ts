import { AsyncLocalStorage } from "node:async_hooks";
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { CallPipeline } from "./call-pipeline.js";
import type { Logger } from "./logger.js";
import type { ServiceIdentity, ServicePermissions } from "./service-identity.js";

/** Who is calling: a user (from an access token) or another Satchel service. */
export interface Principal {
  kind: "user" | "service";
  userId: string;
  /** For a service: whose credential it called with (see service-identity.ts). */
  service?: ServiceIdentity;
  username?: string;
  deviceId?: string;
  deviceName?: string;
}

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated caller" });
export const requestIdKey = createContextKey<string>("", { description: "request id" });
export const loggerKey = createContextKey<Logger | undefined>(undefined, { description: "request logger" });
/** The address a call came from ("127.0.0.1", "::1"), for limits per client address; "" when unknown. */
export const clientAddressKey = createContextKey<string>("", { description: "client address" });

/** Admits a user's call, or throws RESOURCE_EXHAUSTED (see rate-limits.ts). */
export interface CallAdmission {
  admit(userId: string, method: string): void | Promise<void>;
}

export const REQUEST_ID_HEADER = "x-request-id";

/** The request id of the call being handled, for calls it makes to other services (see transport.ts). */
export const currentRequest = new AsyncLocalStorage<{ requestId: string }>();

/** Services every caller may use without a token: health checking and reflection. */
export const PUBLIC_SERVICES = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

export type TokenVerifier = (token: string) => Promise<Principal> | Principal;

export interface AuthOptions {
  verify: TokenVerifier;
  /** Methods ("pkg.Service/Method") anyone may call without a token, besides PUBLIC_SERVICES. */
  publicMethods?: Set<string>;
  /** Services or methods only a service credential may call (operators and other Satchel services). */
  serviceOnly?: Set<string>;
  /** What each other service's credential may call here (the operator's may call anything; see service-identity.ts). */
  servicePermissions: ServicePermissions;
  /** Per-user rate limits, applied once the caller is known to be a user. */
  limits?: CallAdmission;
}

/**
 * The call pipeline (request id, metrics, logs, authentication) as a connect-node interceptor, for
 * the Connect and gRPC-Web port. The request id is echoed in the response headers; a stream is
 * measured until its last message.
 */
export function pipelineInterceptor(pipeline: CallPipeline): Interceptor {
  return (next) => async (req) => {
    const call = pipeline.start({
      service: req.service.typeName,
      method: `${req.service.typeName}/${req.method.name}`,
      header: (name) => req.header.get(name),
      values: req.contextValues,
    });
    let res;
    try {
      await call.authorize();
      res = await currentRequest.run({ requestId: call.requestId }, () => next(req));
    } catch (err) {
      throw call.end(err);
    }
    res.header.set(REQUEST_ID_HEADER, call.requestId);
    if (!res.stream) {
      call.end();
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        let failure: unknown = undefined;
        try {
          yield* messages;
        } catch (err) {
          failure = err;
          throw call.end(err);
        } finally {
          if (failure === undefined) call.end();
        }
      })(),
    };
  };
}
