import { rmSync } from "node:fs";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { BUSY_CLIENT_LIMITS, REPO_ROOT, killLeftovers, loadClusterConfig, startCluster, trustClusterCa, type Cluster } from "../index.js";

let cluster: Cluster | undefined;

/**
 * Starts one real local cluster for the integration project, on its own ports and a fresh state
 * directory, and hands its endpoints to the tests. The suite stops it at the end.
 */
export async function setup(project: TestProject): Promise<void> {
  const stateDir = process.env.SATCHEL_TEST_STATE_DIR ?? join(REPO_ROOT, ".satchel", "test");
  killLeftovers(stateDir);
  rmSync(stateDir, { recursive: true, force: true });
  const config = loadClusterConfig({
    ...process.env,
    SATCHEL_STATE_DIR: stateDir,
    SATCHEL_PORT_BASE: process.env.SATCHEL_TEST_PORT_BASE ?? "17300",
    SATCHEL_LOG_LEVEL: "warn",
    SATCHEL_RATE_LIMITS: process.env.SATCHEL_RATE_LIMITS ?? BUSY_CLIENT_LIMITS,
  });
  cluster = await startCluster(config, (line) => console.log(`[cluster] ${line}`));
  console.log(`[cluster] up in ${cluster.startMs} ms${cluster.endpoints.ca ? ", TLS on every hop" : ", in plaintext"}`);
  // Test files run in workers started after this: they trust the cluster's CA wherever no CA is passed.
  trustClusterCa(cluster.endpoints);
  project.provide("cluster", { stateDir, endpoints: cluster.endpoints });
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
}

declare module "vitest" {
  export interface ProvidedContext {
    cluster: { stateDir: string; endpoints: import("../index.js").ClusterEndpoints };
  }
}
