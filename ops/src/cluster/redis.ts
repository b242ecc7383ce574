import { createConnection, type Socket } from "node:net";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { clientTlsOptions } from "@satchel/proto";
import type { CertFiles } from "./certs.js";
import { ManagedProcess, waitFor } from "./process.js";

/**
 * Redis for commit fan-out and the latest-cursor cache. It keeps nothing on disk: the journal in
 * MariaDB is the truth. With `tls`, it listens for TLS only (its plaintext port is off).
 */
export async function startRedis(stateDir: string, host: string, port: number, tls?: CertFiles & { ca: string }): Promise<ManagedProcess> {
  const dir = join(stateDir, "redis");
  mkdirSync(dir, { recursive: true });
  const listen = tls
    ? ["--port", "0", "--tls-port", String(port), "--tls-cert-file", tls.cert, "--tls-key-file", tls.key, "--tls-ca-cert-file", tls.ca, "--tls-auth-clients", "no"]
    : ["--port", String(port)];
  const proc = new ManagedProcess("redis", stateDir, "redis-server", [
    "--bind", host,
    ...listen,
    "--dir", dir,
    "--save", "",
    "--appendonly", "no",
    "--protected-mode", "no",
  ]);
  proc.start();
  const ca = tls && readFileSync(tls.ca);
  await waitFor(`redis on port ${port}`, 20_000, () => ping(host, port, ca), () => proc.tail());
  return proc;
}

function ping(host: string, port: number, ca: Buffer | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const hello = () => socket.write("PING\r\n");
    const socket: Socket = ca ? tlsConnect({ host, port, ...clientTlsOptions(ca) }, hello) : createConnection({ host, port }, hello);
    socket.once("data", (d) => {
      socket.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    socket.once("error", () => resolve(false));
  });
}
