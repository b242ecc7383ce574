import type { ClusterEndpoints } from "../cluster/cluster.js";
import { ServiceProcesses, type ServiceProcess } from "./service-process.js";

/** One extra notifyserver: its process, its gRPC base URL and its /metrics URL. */
export type NotifyserverProcess = ServiceProcess;

/**
 * Extra notifyserver processes beside the cluster's (to drain one, or run one with other limits),
 * on ports offset from the cluster's notifyserver port (gRPC at port+offset, /metrics at
 * port+offset+1: keep offsets two apart, and clear of the cluster's base+0..45).
 */
export class NotifyserverProcesses extends ServiceProcesses {
  constructor(endpoints: ClusterEndpoints, stateDir: string) {
    super("notifyserver", endpoints, stateDir);
  }
}
