import type { HandlerContext } from "@connectrpc/connect";
import type { ServiceRouter } from "./grpc-server.js";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";

export { ServingStatus };

/**
 * The standard grpc.health.v1 service. The empty service name stands for the whole server; each
 * registered service has its own status. Watch streams the current status and every change.
 */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Set<() => void>();

  constructor(services: string[]) {
    this.statuses.set("", ServingStatus.NOT_SERVING);
    for (const s of services) this.statuses.set(s, ServingStatus.NOT_SERVING);
  }

  setAll(status: ServingStatus): void {
    for (const key of this.statuses.keys()) this.statuses.set(key, status);
    for (const wake of this.watchers) wake();
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  register(router: ServiceRouter): void {
    router.service(Health, {
      check: (req) => {
        const status = this.get(req.service);
        if (status === undefined) {
          throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        }
        return { status };
      },
      list: () => {
        const statuses: Record<string, { status: ServingStatus }> = {};
        for (const [name, status] of this.statuses) statuses[name] = { status };
        return { statuses };
      },
      watch: (req, ctx) => this.watch(req.service, ctx),
    });
  }

  private async *watch(service: string, ctx: HandlerContext) {
    let last: ServingStatus | undefined;
    while (!ctx.signal.aborted) {
      const status = this.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
      if (status !== last) {
        last = status;
        yield { status };
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.watchers.delete(wake);
          ctx.signal.removeEventListener("abort", wake);
          resolve();
        };
        this.watchers.add(wake);
        ctx.signal.addEventListener("abort", wake);
      });
    }
  }
}
