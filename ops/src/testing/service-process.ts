import { join } from "node:path";
import { publicTokenKeys } from "@satchel/proto";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { identityEnv, tlsEnv, waitServing, type ServiceName } from "../cluster/cluster.js";
import { clusterCertsAt } from "../cluster/certs.js";
import { caOf } from "../cluster/trust.js";
import { ManagedProcess } from "../cluster/process.js";
import { REPO_ROOT } from "../config.js";

export type { ServiceName };

/** One extra service process: its process, its gRPC base URL and its /metrics URL. */
export interface ServiceProcess {
  proc: ManagedProcess;
  url: string;
  metricsUrl: string;
}

/**
 * Everything a service process of a running cluster needs in its environment, for one more
 * instance beside the cluster's: gRPC on `port`, /metrics on port+1 (the metaserver's share-link
 * gateway on port+2).
 */
export function serviceEnv(e: ClusterEndpoints, service: ServiceName, port: number): Record<string, string> {
  const prefix = `SATCHEL_${service.toUpperCase()}`;
  return {
    SATCHEL_HOST: "127.0.0.1",
    [`${prefix}_PORT`]: String(port),
    [`${prefix}_METRICS_PORT`]: String(port + 1),
    ...(service === "metaserver" ? { SATCHEL_METASERVER_LINKS_PORT: String(port + 2), SATCHEL_BLOCKSERVER_URL: e.blockserver, SATCHEL_DIRECTORY_URL: e.directoryUrl } : {}),
    ...(service === "blockserver" ? { SATCHEL_STORAGE_NODES: JSON.stringify(e.storageNodes), SATCHEL_BLOCK_INDEX_URL: e.blockIndexUrl } : {}),
    ...(service === "notifyserver" ? { SATCHEL_METASERVER_URL: e.metaserver } : {}),
    ...identityEnv(e, service),
    // The private token keys and the grant keys go only where they are used.
    SATCHEL_TOKEN_KEYS: JSON.stringify(service === "metaserver" ? e.tokenKeys : publicTokenKeys(e.tokenKeys)),
    ...(service === "notifyserver" ? {} : { SATCHEL_GRANT_KEYS: JSON.stringify(e.grantKeys) }),
    SATCHEL_REDIS_URL: e.redisUrl,
    SATCHEL_LOG_LEVEL: "warn",
    ...(e.rateLimits ? { SATCHEL_RATE_LIMITS: e.rateLimits } : {}),
    ...tlsEnv(e.ca ? clusterCertsAt(e.ca) : undefined, service),
  };
}

/**
 * Extra processes of one service beside the cluster's (to kill one, drain one, or run one with
 * other settings), on ports offset from the cluster's port of that service; stopAll() ends them.
 */
export class ServiceProcesses {
  private readonly started: ManagedProcess[] = [];

  constructor(private readonly service: ServiceName, private readonly endpoints: ClusterEndpoints, private readonly stateDir: string) {}

  async start(name: string, portOffset: number, env: Record<string, string> = {}): Promise<ServiceProcess> {
    const port = Number(new URL(this.endpoints[this.service]).port) + portOffset;
    const proc = new ManagedProcess(name, this.stateDir, process.execPath, [join(REPO_ROOT, this.service, "dist", "bin.js")], {
      ...serviceEnv(this.endpoints, this.service, port),
      ...env,
    });
    proc.start();
    this.started.push(proc);
    const url = `${new URL(this.endpoints[this.service]).protocol}//127.0.0.1:${port}`;
    await waitServing(name, url, proc, 60_000, caOf(this.endpoints));
    return { proc, url, metricsUrl: `http://127.0.0.1:${port + 1}/metrics` };
  }

  async stopAll(): Promise<void> {
    for (const p of this.started) await p.stop(5000);
  }
}
