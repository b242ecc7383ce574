import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterEndpoints } from "../cluster/cluster.js";
import { ManagedProcess, waitFor } from "../cluster/process.js";
import { REPO_ROOT } from "../config.js";

export const RULES_DIR = join(REPO_ROOT, "ops", "prometheus", "rules");
export const RULE_TESTS_DIR = join(REPO_ROOT, "ops", "prometheus", "tests");
export const CONSOLES_DIR = join(REPO_ROOT, "ops", "prometheus", "consoles");
export const CONSOLE_LIBRARIES_DIR = join(REPO_ROOT, "ops", "prometheus", "console_libraries");

const hostPort = (metricsUrl: string) => new URL(metricsUrl).host;

/**
 * Prometheus's configuration for a Satchel cluster: one job per service (its /metrics port) and
 * Satchel's alert rules. Jobs are named satchel-<service>, as the rules and dashboards expect.
 */
export function prometheusConfig(endpoints: ClusterEndpoints, opts: { scrapeSeconds?: number } = {}): string {
  const every = `${opts.scrapeSeconds ?? 15}s`;
  const job = (name: string, url: string) => `  - job_name: satchel-${name}
    static_configs:
      - targets: ["${hostPort(url)}"]
`;
  return `# Generated for the local Satchel cluster (ops/src/monitoring/prometheus.ts).
global:
  scrape_interval: ${every}
  evaluation_interval: ${every}
rule_files:
  - ${join(RULES_DIR, "*.yml")}
scrape_configs:
${job("metaserver", endpoints.metrics.metaserver)}${job("blockserver", endpoints.metrics.blockserver)}${job("notifyserver", endpoints.metrics.notifyserver)}`;
}

export interface RunningPrometheus {
  url: string;
  configFile: string;
  process: ManagedProcess;
}

/** Starts Debian's prometheus on loopback with its own data directory under the state directory. */
export async function startPrometheus(stateDir: string, endpoints: ClusterEndpoints, port: number, opts: { scrapeSeconds?: number } = {}): Promise<RunningPrometheus> {
  const dir = join(stateDir, `prometheus-${port}`);
  mkdirSync(join(dir, "data"), { recursive: true });
  const configFile = join(dir, "prometheus.yml");
  writeFileSync(configFile, prometheusConfig(endpoints, opts));
  const url = `http://127.0.0.1:${port}`;
  const proc = new ManagedProcess("prometheus", stateDir, "prometheus", [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${port}`,
    "--web.enable-lifecycle",
    `--web.console.templates=${CONSOLES_DIR}`,
    `--web.console.libraries=${CONSOLE_LIBRARIES_DIR}`,
  ], {});
  proc.start();
  await waitFor(`prometheus at ${url}`, 60_000, async () => {
    if (!proc.running) throw new Error(`prometheus exited:\n${proc.tail()}`);
    const res = await fetch(`${url}/-/ready`).catch(() => undefined);
    return res?.status === 200;
  });
  return { url, configFile, process: proc };
}

/** An instant query through Prometheus's HTTP API. */
export async function promQuery(url: string, expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (body.status !== "success") throw new Error(`query ${expr} failed: ${body.error}`);
  return body.data.result;
}
