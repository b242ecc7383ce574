import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { clusterCertsAt } from "../cluster/certs.js";
import { startMinioNode, type MinioNode } from "../cluster/minio.js";
import { loadClusterConfig } from "../config.js";

/**
 * Fault injection for tests: stop, pause and restart the cluster's MinIO node processes, found
 * through the pid files under the state directory. A restarted node reuses its data directory.
 */
export class NodeControl {
  private readonly restarted = new Map<number, MinioNode>();

  constructor(private readonly stateDir: string, private readonly endpoints: ClusterEndpoints) {}

  private pid(i: number): number {
    const file = join(this.stateDir, "run", `minio-${i}.pid`);
    if (!existsSync(file)) throw new Error(`minio-${i} is not running (no pid file)`);
    return Number(readFileSync(file, "utf8"));
  }

  /** Power cut: SIGKILL, the node's process is gone until start(). */
  async kill(i: number): Promise<void> {
    const pid = this.pid(i);
    process.kill(pid, "SIGKILL");
    while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
  }

  /** A hung node: the process stops answering but keeps its connections open. */
  pause(i: number): void {
    process.kill(this.pid(i), "SIGSTOP");
  }

  resume(i: number): void {
    process.kill(this.pid(i), "SIGCONT");
  }

  async start(i: number): Promise<void> {
    const node = this.endpoints.storageNodes[i];
    const port = Number(new URL(node.endpoint).port);
    const config = loadClusterConfig();
    const certs = this.endpoints.ca ? clusterCertsAt(this.endpoints.ca) : undefined;
    const tls = certs && { ...certs.server(`minio-${i}`), ca: certs.ca };
    this.restarted.set(i, await startMinioNode(this.stateDir, config.minioBinary, i, "127.0.0.1", port, node, true, tls));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
