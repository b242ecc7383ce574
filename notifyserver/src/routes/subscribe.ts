import type { ConnectRouter } from "@connectrpc/connect";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import type { NotifyserverContext } from "../context.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { Subscriber } from "../fanout/fanout.js";

const MAX_NAMESPACES = 10_000;

export function subscribeRoutes(ctx: NotifyserverContext, shutdown: () => AbortSignal) {
  return (router: ConnectRouter) =>
    router.service(NotifyService, {
      async *subscribe(req, hctx) {
        if (req.namespaceIds.length === 0) throw new ConnectError("name at least one namespace to subscribe to", Code.InvalidArgument);
        if (req.namespaceIds.length > MAX_NAMESPACES) {
          throw new ConnectError(`at most ${MAX_NAMESPACES} namespaces per stream`, Code.InvalidArgument);
        }
        const sub = new Subscriber(new Set(req.namespaceIds));
        ctx.fanout.add(sub);
        const signal = AbortSignal.any([hctx.signal, shutdown()]);
        const interval = ctx.config.heartbeatSeconds;
        try {
          yield { event: { case: "heartbeat", value: { intervalSeconds: interval } } };
          while (!signal.aborted) {
            const advanced = await sub.take(interval * 1000, signal);
            if (signal.aborted) break;
            if (advanced.size === 0) {
              yield { event: { case: "heartbeat", value: { intervalSeconds: interval } } };
              continue;
            }
            for (const [namespaceId, cursor] of advanced) {
              yield { event: { case: "advanced", value: { namespaceId, cursor } } };
            }
          }
        } finally {
          ctx.fanout.remove(sub);
        }
      },
    });
}
