import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { envString, type Env } from "@satchel/proto";
import type { SatchelClientOptions } from "../client.js";

/**
 * Where the CLI finds the platform: explicit SATCHEL_METASERVER_URL / SATCHEL_BLOCKSERVER_URL /
 * SATCHEL_TOKEN, or else the endpoints file a local cluster writes (<state dir>/cluster.json).
 */
export function loadCliConfig(env: Env = process.env): SatchelClientOptions & { serviceToken: string; notifyserverUrl: string } {
  const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
  const stateDir = envString(env, "SATCHEL_STATE_DIR", join(repoRoot, ".satchel", "dev"));
  const clusterFile = envString(env, "SATCHEL_CLUSTER_FILE", join(stateDir, "cluster.json"));
  let fromFile: { metaserver?: string; blockserver?: string; notifyserver?: string; serviceToken?: string; ca?: string; devUser?: { username: string; password: string } } = {};
  if (existsSync(clusterFile)) fromFile = JSON.parse(readFileSync(clusterFile, "utf8"));
  // The local cluster's CA goes with the local cluster's URLs, not with a server named elsewhere.
  const caPath = envString(env, "SATCHEL_TLS_CA", env.SATCHEL_METASERVER_URL ? "" : (fromFile.ca ?? ""));
  const username = envString(env, "SATCHEL_USERNAME", fromFile.devUser?.username ?? "");
  const password = envString(env, "SATCHEL_PASSWORD", fromFile.devUser?.password ?? "");
  const options: SatchelClientOptions & { serviceToken: string; notifyserverUrl: string } = {
    notifyserverUrl: envString(env, "SATCHEL_NOTIFYSERVER_URL", fromFile.notifyserver ?? ""),
    serviceToken: envString(env, "SATCHEL_SERVICE_TOKEN", fromFile.serviceToken ?? ""),
    metaserverUrl: envString(env, "SATCHEL_METASERVER_URL", fromFile.metaserver ?? ""),
    blockserverUrl: envString(env, "SATCHEL_BLOCKSERVER_URL", fromFile.blockserver ?? ""),
    // The CA of the services' certificates: SATCHEL_TLS_CA, else the local cluster's.
    ca: caPath ? readFileSync(caPath) : undefined,
    credentials: username && password ? { username, password, deviceName: envString(env, "SATCHEL_DEVICE_NAME", "") || undefined } : undefined,
  };
  if (!options.metaserverUrl || !options.blockserverUrl || !options.credentials) {
    throw new Error(
      `no Satchel cluster found: start one with "bash ops/up.sh", or set SATCHEL_METASERVER_URL, ` +
        `SATCHEL_BLOCKSERVER_URL, SATCHEL_USERNAME and SATCHEL_PASSWORD (looked for ${clusterFile})`,
    );
  }
  return options;
}
