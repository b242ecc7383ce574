import type { HandlerContext } from "@connectrpc/connect";
import { principalKey, type ServiceRouter } from "@satchel/proto";
import { NotifyService, type SubscribeResponse } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import type { NotifyserverContext } from "../context.js";
import { ConnectError, guarded, guardedStream, invalidArgument, permissionDenied, unauthenticated } from "../errors.js";
import { advancedMessage } from "../fanout/advanced-message.js";
import { Subscriber, type Pending } from "../fanout/fanout.js";

const MAX_NAMESPACES = 10_000;

type Event = SubscribeResponse["event"];

/** The signals a long-lived call ends on: the client going away, the server draining. */
export interface Lifecycle {
  drain(): AbortSignal;
}

export function subscribeRoutes(ctx: NotifyserverContext, lifecycle: Lifecycle) {
  /** The caller and the namespaces it may watch: a user only those mounted in its tree. */
  const watched = async (hctx: HandlerContext, requested: bigint[]): Promise<{ caller: string; namespaces: Set<bigint> }> => {
    const p = hctx.values.get(principalKey);
    if (!p) throw unauthenticated("no authenticated caller");
    if (requested.length > MAX_NAMESPACES) throw invalidArgument(`watch at most ${MAX_NAMESPACES} namespaces per call`);
    if (p.kind === "service") {
      if (requested.length === 0) throw invalidArgument("name the namespaces to watch (the operator's credential has no tree)");
      return { caller: "service", namespaces: new Set(requested) };
    }
    const mine = await ctx.mounts.namespacesOf(p.userId);
    // A copy: an ended membership takes a namespace out of this stream's set, not the cache's.
    if (requested.length === 0) return { caller: p.userId, namespaces: new Set(mine) };
    for (const ns of requested) {
      if (!mine.has(ns)) throw permissionDenied(`namespace ${ns} is not in your tree`);
    }
    return { caller: p.userId, namespaces: new Set(requested) };
  };

  const admit = (caller: string) => {
    try {
      return ctx.limits.acquire(caller, caller !== "service");
    } catch (err) {
      ctx.notifyMetrics.refused.inc({ reason: ConnectError.from(err).rawMessage.includes("you already hold") ? "user_limit" : "server_limit" });
      throw err;
    }
  };

  /** Counts what a subscriber delivers: notifications, fan-out latency, coalesced advances. */
  const delivered = (sub: Subscriber<SubscribeResponse>, advanced: Map<bigint, Pending>) => {
    const now = Date.now();
    for (const p of advanced.values()) {
      ctx.notifyMetrics.notificationsSent.inc();
      if (p.publishedAt > 0) ctx.notifyMetrics.fanoutLatency.observe(Math.max(0, now - p.publishedAt) / 1000);
    }
    if (sub.coalesced > 0) {
      ctx.notifyMetrics.coalesced.inc(sub.coalesced);
      sub.coalesced = 0;
    }
  };

  return (router: ServiceRouter) =>
    router.service(NotifyService, {
      subscribe: guardedStream("Subscribe", async function* (req, hctx) {
        const { caller, namespaces } = await watched(hctx, req.namespaceIds);
        const release = admit(caller);
        const sub = new Subscriber<SubscribeResponse>(namespaces, caller);
        ctx.fanout.add(sub);
        ctx.notifyMetrics.openStreams.inc();
        const draining = lifecycle.drain();
        const signal = AbortSignal.any([hctx.signal, draining]);
        const interval = ctx.config.heartbeatSeconds;
        const heartbeat: Event = { case: "heartbeat", value: { $typeName: "satchel.notify.v1.Heartbeat", intervalSeconds: interval } };
        // One listener and one timer per stream, not per event.
        const end = () => sub.close();
        signal.addEventListener("abort", end, { once: true });
        let lastSent = Date.now();
        const beat = setInterval(() => {
          if (Date.now() - lastSent >= interval * 1000 - 50) sub.nudge();
        }, interval * 1000);
        try {
          yield { event: heartbeat };
          // Where each namespace stands now, so a reconnecting device knows at once whether it is behind.
          const ids = [...namespaces];
          const latest = await ctx.latestCursors(ids);
          for (const [i, cursor] of latest.entries()) {
            if (cursor === undefined) continue;
            sub.known(ids[i], cursor);
            yield { event: { case: "advanced", value: { $typeName: "satchel.notify.v1.NamespaceAdvanced", namespaceId: ids[i], cursor } } };
          }
          while (!signal.aborted) {
            const advanced = await sub.take();
            if (hctx.signal.aborted) return;
            delivered(sub, advanced);
            for (const [namespaceId, p] of advanced) yield p.message ?? advancedMessage(namespaceId, p.cursor);
            if (advanced.size === 0 && !signal.aborted) yield { event: heartbeat };
            lastSent = Date.now();
          }
          if (draining.aborted && !hctx.signal.aborted) {
            // Spread the reconnects so that a drained server's clients do not all land at once.
            const reconnectAfterMs = Math.floor(Math.random() * ctx.config.drainSpreadMs);
            yield { event: { case: "draining", value: { $typeName: "satchel.notify.v1.Draining", reconnectAfterMs } } };
          }
        } finally {
          clearInterval(beat);
          signal.removeEventListener("abort", end);
          ctx.fanout.remove(sub);
          ctx.notifyMetrics.openStreams.dec();
          release();
        }
      }),
      poll: guarded("Poll", async (req, hctx) => {
        const given = new Map(req.cursors.map((c) => [c.namespaceId, c.cursor]));
        if (given.size === 0) throw invalidArgument("give the cursor you have for at least one namespace");
        const { caller, namespaces } = await watched(hctx, [...given.keys()]);
        const timeoutSeconds = ctx.config.pollTimeoutSeconds;
        const draining = lifecycle.drain();
        if (draining.aborted) return { advanced: [], timeoutSeconds, retryAfterSeconds: 1 + Math.floor(Math.random() * 5) };
        const release = admit(caller);
        const sub = new Subscriber<SubscribeResponse>(namespaces, caller);
        ctx.fanout.add(sub);
        ctx.notifyMetrics.openPolls.inc();
        let cleanup = () => {};
        try {
          // Already behind? Answer at once (Redis knows the latest cursors; MySQL stays the truth for ListDelta).
          const ids = [...namespaces];
          const latest = await ctx.latestCursors(ids);
          const behind = ids.flatMap((ns, i) => (latest[i] !== undefined && latest[i]! > given.get(ns)! ? [{ namespaceId: ns, cursor: latest[i]! }] : []));
          if (behind.length > 0) return { advanced: behind, timeoutSeconds, retryAfterSeconds: 0 };
          const signal = AbortSignal.any([hctx.signal, draining]);
          const deadline = Date.now() + timeoutSeconds * 1000;
          const end = () => sub.close();
          signal.addEventListener("abort", end, { once: true });
          const timer = setTimeout(end, timeoutSeconds * 1000);
          cleanup = () => {
            clearTimeout(timer);
            signal.removeEventListener("abort", end);
          };
          while (!signal.aborted && Date.now() < deadline) {
            const advanced = await sub.take();
            const past = [...advanced].filter(([ns, p]) => p.cursor > given.get(ns)!);
            if (past.length > 0) {
              delivered(sub, new Map(past));
              return { advanced: past.map(([namespaceId, p]) => ({ namespaceId, cursor: p.cursor })), timeoutSeconds, retryAfterSeconds: 0 };
            }
          }
          // Nothing moved: poll again at once, unless the server is going away or nearly full.
          const busy = ctx.limits.open > 0.9 * ctx.config.maxStreams;
          return { advanced: [], timeoutSeconds, retryAfterSeconds: draining.aborted ? 1 + Math.floor(Math.random() * 5) : busy ? 5 : 0 };
        } finally {
          cleanup();
          ctx.fanout.remove(sub);
          ctx.notifyMetrics.openPolls.dec();
          release();
        }
      }),
    });
}
