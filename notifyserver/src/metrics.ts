import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The notifyserver's own metrics beside the shared RPC ones. */
export class NotifyMetrics {
  readonly openStreams: Gauge;
  readonly openPolls: Gauge;
  readonly notificationsSent: Counter;
  readonly fanoutLatency: Histogram;
  readonly coalesced: Counter;
  readonly refused: Counter<"reason">;
  readonly received: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.openStreams = new Gauge({ name: "satchel_notifyserver_open_streams", help: "Subscribe streams open.", registers });
    this.openPolls = new Gauge({ name: "satchel_notifyserver_open_polls", help: "Long polls waiting.", registers });
    this.notificationsSent = new Counter({ name: "satchel_notifyserver_notifications_sent_total", help: "Namespace advances written to streams and polls.", registers });
    this.fanoutLatency = new Histogram({
      name: "satchel_notifyserver_fanout_latency_seconds",
      help: "From the metaserver's publish to the write on a stream.",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5],
      registers,
    });
    this.coalesced = new Counter({ name: "satchel_notifyserver_coalesced_total", help: "Advances folded into one not yet delivered (slow consumers).", registers });
    this.refused = new Counter({ name: "satchel_notifyserver_refused_total", help: "Streams and polls refused, by reason.", labelNames: ["reason"], registers });
    for (const reason of ["user_limit", "server_limit"]) this.refused.inc({ reason }, 0);
    this.received = new Counter({ name: "satchel_notifyserver_advances_received_total", help: "Namespace advances received from Redis.", registers });
  }
}
