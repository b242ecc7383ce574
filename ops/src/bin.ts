#!/usr/bin/env node
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadClusterConfig } from "./config.js";
import { startCluster, type ClusterEndpoints } from "./cluster/cluster.js";
import { startPrometheus } from "./monitoring/prometheus.js";

/**
 * satchel-cluster up      start the local platform in the foreground (Ctrl-C stops it)
 * satchel-cluster stop    stop a cluster started by `up` from another terminal
 * satchel-cluster status  print the endpoints of the running cluster
 * satchel-cluster prometheus  run Prometheus (port base+50) against the running cluster with
 *                          Satchel's alert rules, in the foreground
 */
async function main(): Promise<void> {
  const command = process.argv[2] ?? "up";
  const config = loadClusterConfig();
  const stateFile = join(config.stateDir, "cluster.json");
  const running = (): { pid: number } | undefined => {
    if (!existsSync(stateFile)) return undefined;
    const info = JSON.parse(readFileSync(stateFile, "utf8")) as { pid: number };
    try {
      process.kill(info.pid, 0);
      return info;
    } catch {
      return undefined;
    }
  };
  switch (command) {
    case "up": {
      const other = running();
      if (other) throw new Error(`a cluster already runs from ${config.stateDir} (launcher pid ${other.pid}); stop it first`);
      const log = (line: string) => console.log(`[satchel] ${line}`);
      const cluster = await startCluster(config, log);
      const e = cluster.endpoints;
      log(`cluster up in ${(cluster.startMs / 1000).toFixed(1)} s`);
      console.log(`
  metaserver    ${e.metaserver}   (metrics ${e.metrics.metaserver})
  blockserver   ${e.blockserver}   (metrics ${e.metrics.blockserver})
  notifyserver  ${e.notifyserver}   (metrics ${e.metrics.notifyserver})
  MinIO nodes   ${e.storageNodes.map((n) => n.endpoint).join(" ")}
  dev account   ${e.devUser.username} (password in ${stateFile})
  operator      ${e.serviceToken.slice(0, 8)}… (the operator's credential, for admin commands; in the same file)
  endpoints     ${stateFile}
  TLS           ${e.ca ? `on every hop; CA ${e.ca} (buf curl --cacert, SATCHEL_TLS_CA)` : "OFF (SATCHEL_PLAINTEXT=on: local development only)"}

  Try:  npx satchel put ./some-file /some-file && npx satchel ls /
  Stop: Ctrl-C, or "bash ops/up.sh stop" from another terminal
`);
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log(`${signal}: stopping`);
        await cluster.stop();
        log("stopped");
        process.exit(0);
      };
      process.on("SIGINT", () => void stop("SIGINT"));
      process.on("SIGTERM", () => void stop("SIGTERM"));
      // A service that dies takes the cluster down with a clear message rather than leaving it half up.
      for (const [name, proc] of Object.entries(cluster.services)) {
        void proc.waitExit().then((code) => {
          if (!stopping) {
            log(`${name} exited with code ${code}; see ${proc.logFile}`);
            void stop("service exit");
          }
        });
      }
      await new Promise(() => undefined);
      break;
    }
    case "stop": {
      const info = running();
      if (!info) {
        console.log(`no cluster is running from ${config.stateDir}`);
        return;
      }
      process.kill(info.pid, "SIGTERM");
      while (running()) await new Promise((r) => setTimeout(r, 200));
      console.log("stopped");
      break;
    }
    case "status": {
      if (!running()) {
        console.log(`no cluster is running from ${config.stateDir}`);
        process.exitCode = 1;
        return;
      }
      console.log(readFileSync(stateFile, "utf8"));
      break;
    }
    case "prometheus": {
      if (!running()) throw new Error(`no cluster is running from ${config.stateDir}: start it with "bash ops/up.sh"`);
      const endpoints = JSON.parse(readFileSync(stateFile, "utf8")) as ClusterEndpoints;
      const prom = await startPrometheus(config.stateDir, endpoints, config.portBase + 50);
      console.log(`Prometheus ${prom.url} (config ${prom.configFile}); alerts at ${prom.url}/alerts; Ctrl-C stops it`);
      await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
      await prom.process.stop(5000);
      break;
    }
    default:
      throw new Error(`unknown command "${command}"; use up, stop, status or prometheus`);
  }
}

main().catch((err: Error) => {
  console.error(`satchel-cluster: ${err.message}`);
  process.exit(1);
});
