import { join } from "node:path";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { waitServing } from "../cluster/cluster.js";
import { ManagedProcess } from "../cluster/process.js";
import { REPO_ROOT } from "../config.js";

/** One extra notifyserver: its process, its gRPC base URL and its /metrics URL. */
export interface NotifyserverProcess {
  proc: ManagedProcess;
  url: string;
  metricsUrl: string;
}

/**
 * Extra notifyserver processes beside the cluster's (to drain one, or run one with other limits),
 * on ports offset from the cluster's notifyserver port (gRPC at port+offset, /metrics at
 * port+offset+1: keep offsets two apart, and clear of the cluster's base+0..45); stopAll() ends them.
 */
export class NotifyserverProcesses {
  private readonly started: ManagedProcess[] = [];

  constructor(private readonly endpoints: ClusterEndpoints, private readonly stateDir: string) {}

  async start(name: string, portOffset: number, env: Record<string, string> = {}): Promise<NotifyserverProcess> {
    const e = this.endpoints;
    const port = Number(new URL(e.notifyserver).port) + portOffset;
    const proc = new ManagedProcess(name, this.stateDir, process.execPath, [join(REPO_ROOT, "notifyserver", "dist", "bin.js")], {
      SATCHEL_HOST: "127.0.0.1",
      SATCHEL_NOTIFYSERVER_PORT: String(port),
      SATCHEL_NOTIFYSERVER_METRICS_PORT: String(port + 1),
      SATCHEL_SERVICE_TOKEN: e.serviceToken,
      SATCHEL_TOKEN_KEYS: JSON.stringify(e.tokenKeys),
      SATCHEL_DIRECTORY_URL: e.directoryUrl,
      SATCHEL_REDIS_URL: e.redisUrl,
      SATCHEL_LOG_LEVEL: "warn",
      ...env,
    });
    proc.start();
    this.started.push(proc);
    const url = `http://127.0.0.1:${port}`;
    await waitServing(name, url, proc);
    return { proc, url, metricsUrl: `http://127.0.0.1:${port + 1}/metrics` };
  }

  async stopAll(): Promise<void> {
    for (const p of this.started) await p.stop(5000);
  }
}
