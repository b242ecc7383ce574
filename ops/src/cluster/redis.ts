import { createConnection, type Socket } from "node:net";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { clientTlsOptions } from "@satchel/proto";
import type { CertFiles } from "./certs.js";
import { ManagedProcess, waitFor } from "./process.js";

/** The Redis user every Satchel service connects as (the default user is off). */
export const REDIS_USER = "satchel";

/**
 * Redis for commit fan-out, the latest-cursor cache and the shared rate limits. It keeps nothing on
 * disk: the journal in MariaDB is the truth. With `tls`, it listens for TLS only (its plaintext port
 * is off). Protected mode is on and the default user is off: clients sign in as REDIS_USER with
 * the password from the state directory's secrets, which may run data commands and scripts but no
 * administrative ones (CONFIG, DEBUG, SHUTDOWN, ACL, …) and cannot flush or list every key.
 */
export async function startRedis(stateDir: string, host: string, port: number, password: string, tls?: CertFiles & { ca: string }): Promise<ManagedProcess> {
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
    "--protected-mode", "yes",
    "--user", "default", "off",
    "--user", REDIS_USER, "on", `>${password}`, "~*", "&*", "+@all", "-@admin", "-flushall", "-flushdb", "-keys",
  ]);
  proc.start();
  const ca = tls && readFileSync(tls.ca);
  await waitFor(`redis on port ${port}`, 20_000, () => ping(host, port, password, ca), () => proc.tail());
  return proc;
}

function ping(host: string, port: number, password: string, ca: Buffer | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const hello = () => socket.write(`AUTH ${REDIS_USER} ${password}\r\n`);
    const socket: Socket = ca ? tlsConnect({ host, port, ...clientTlsOptions(ca) }, hello) : createConnection({ host, port }, hello);
    socket.once("data", (d) => {
      socket.destroy();
      resolve(d.toString().startsWith("+OK"));
    });
    socket.once("error", () => resolve(false));
  });
}
