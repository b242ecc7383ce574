import { randomUUID } from "node:crypto";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import { PUBLIC_SERVICES, REQUEST_ID_HEADER, principalKey, requestIdKey, type AuthOptions, type Principal } from "./interceptors.js";
import type { Logger } from "./logger.js";
import { servicePermits } from "./service-identity.js";
import { codeName, type ServiceMetrics } from "./metrics.js";

/** What the pipeline needs of an incoming call, whichever server runtime received it. */
export interface IncomingCall {
  /** "satchel.meta.v1.MetaService" */
  service: string;
  /** "satchel.meta.v1.MetaService/CommitFile" */
  method: string;
  header(name: string): string | null | undefined;
  values: ContextValues;
}

/** One call in flight: started by CallPipeline.start, ended exactly once by end(). */
export interface OpenCall {
  readonly requestId: string;
  /** Authenticates the caller (UNAUTHENTICATED, PERMISSION_DENIED) and puts it in the call's values. */
  authorize(): Promise<void> | void;
  /** Records the outcome (metrics, one log line on failure); returns the error as a status. */
  end(err?: unknown): ConnectError | undefined;
}

/**
 * What every RPC goes through, once, for both server runtimes (grpc-js for gRPC, connect-node for
 * Connect and gRPC-Web): a request id (the caller's x-request-id, or a new one), RPC metrics, one
 * structured log line for a failed call, and authentication. A call that fails authentication is
 * counted and logged like any other.
 */
export class CallPipeline {
  constructor(private readonly opts: { logger: Logger; metrics?: ServiceMetrics; auth: AuthOptions }) {}

  start(call: IncomingCall): OpenCall {
    const requestId = call.header(REQUEST_ID_HEADER) || randomUUID();
    call.values.set(requestIdKey, requestId);
    const { logger, metrics, auth } = this.opts;
    const started = performance.now();
    const method = call.method;
    metrics?.rpcInFlight.inc({ method });
    let ended = false;
    return {
      requestId,
      authorize: () => {
        const principal = authenticate(auth, call);
        if (principal === undefined) return;
        if (principal instanceof Promise) return principal.then((p) => void (p && call.values.set(principalKey, p)));
        call.values.set(principalKey, principal);
      },
      end: (err?: unknown) => {
        const status = err === undefined ? undefined : ConnectError.from(err);
        if (ended) return status;
        ended = true;
        const ms = performance.now() - started;
        if (metrics) {
          metrics.rpcInFlight.dec({ method });
          metrics.rpcDuration.observe({ method }, ms / 1000);
          metrics.rpcRequests.inc({ method, code: status ? codeName(status.code) : "OK" });
        }
        if (status) {
          const level = status.code === Code.Internal || status.code === Code.Unknown ? "error" : "info";
          // An INTERNAL's cause (what a library threw) is logged here only: its message never reaches the caller.
          const cause = status.cause instanceof Error && status.cause !== status ? status.cause.message : undefined;
          logger[level]({ requestId, method, ms, code: codeName(status.code), err: status.rawMessage, ...(cause ? { cause } : {}) }, "rpc failed");
          status.metadata.set(REQUEST_ID_HEADER, requestId);
        } else if (logger.isLevelEnabled("debug")) {
          logger.debug({ requestId, method, ms }, "rpc ok");
        }
        return status;
      },
    };
  }
}

/**
 * The one place every RPC is authenticated: a missing, expired, forged or wrongly-signed token is
 * UNAUTHENTICATED; a user calling a service-only method is PERMISSION_DENIED; a user over a rate
 * limit is RESOURCE_EXHAUSTED. Public services and methods give no principal (undefined).
 */
function authenticate(opts: AuthOptions, call: IncomingCall): Principal | Promise<Principal> | undefined {
  if (PUBLIC_SERVICES.has(call.service) || opts.publicMethods?.has(call.method)) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(call.header("authorization") ?? "");
  if (!match) throw new ConnectError('missing credentials: send the header "authorization: Bearer <token>"', Code.Unauthenticated);
  const permitted = (principal: Principal): Principal | Promise<Principal> => {
    if (principal.kind !== "service" && (opts.serviceOnly?.has(call.service) || opts.serviceOnly?.has(call.method))) {
      throw new ConnectError(`${call.method} is for Satchel services and operators: call it with the operator's credential`, Code.PermissionDenied);
    }
    if (principal.kind === "service" && (principal.service === undefined || !servicePermits(opts.servicePermissions, principal.service, call.service, call.method))) {
      throw new ConnectError(`${call.method} is not for the ${principal.service ?? "unnamed service"}'s credential: each Satchel service calls only what it needs; operators use the operator's credential`, Code.PermissionDenied);
    }
    const admitted = principal.kind === "user" ? opts.limits?.admit(principal.userId, call.method) : undefined;
    return admitted instanceof Promise ? admitted.then(() => principal) : principal;
  };
  const invalid = (err: unknown): never => {
    const ce = ConnectError.from(err);
    throw ce.code === Code.Unauthenticated ? ce : new ConnectError(`invalid token: ${ce.rawMessage}`, Code.Unauthenticated);
  };
  let verified: Principal | Promise<Principal>;
  try {
    verified = opts.verify(match[1]);
  } catch (err) {
    return invalid(err);
  }
  return verified instanceof Promise ? verified.then(permitted, invalid) : permitted(verified);
}
