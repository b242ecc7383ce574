import { execFile } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import mysql from "mysql2/promise";
import type { CertFiles } from "./certs.js";
import { ManagedProcess, WaitAbortedError, waitFor } from "./process.js";

const run = promisify(execFile);

export interface MariadbServer {
  index: number;
  port: number;
  socket: string;
  process: ManagedProcess;
}

/**
 * One mariadbd with its own data directory and port. Initialised on first start; later starts
 * reuse the data. Memory is kept small: this is a development cluster on a 2-core machine.
 */
export async function startMariadb(stateDir: string, index: number, host: string, port: number, tls?: CertFiles & { ca: string }): Promise<MariadbServer> {
  const dir = join(stateDir, `mariadb-${index}`);
  const dataDir = join(dir, "data");
  const socket = join(dir, "mysqld.sock");
  // A temporary directory of its own: servers set up at the same time share nothing in /tmp.
  const tmpDir = join(dir, "tmp");
  mkdirSync(tmpDir, { recursive: true });
  if (!existsSync(join(dataDir, "mysql"))) {
    mkdirSync(dataDir, { recursive: true });
    await run("mariadb-install-db", [
      "--no-defaults",
      `--datadir=${dataDir}`,
      `--tmpdir=${tmpDir}`,
      "--user=root",
      "--auth-root-authentication-method=normal",
      "--skip-test-db",
    ]);
  }
  const proc = new ManagedProcess(`mariadb-${index}`, stateDir, "mariadbd", [
    "--no-defaults",
    `--datadir=${dataDir}`,
    `--tmpdir=${tmpDir}`,
    `--socket=${socket}`,
    `--pid-file=${join(dir, "mariadbd.pid")}`,
    `--port=${port}`,
    `--bind-address=${host}`,
    "--user=root",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=64M",
    // Group commit keeps durability (flush at each commit) without a disk sync per transaction.
    "--innodb-flush-log-at-trx-commit=1",
    "--max-connections=500",
    "--performance-schema=OFF",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_bin",
    // With TLS, a TCP client that does not use it is refused (the local socket stays for setup).
    ...(tls ? [`--ssl-ca=${tls.ca}`, `--ssl-cert=${tls.cert}`, `--ssl-key=${tls.key}`, "--require-secure-transport=ON"] : []),
  ]);
  proc.start();
  await waitFor(`mariadb-${index} on port ${port}`, 60_000, async () => {
    if (!proc.running) throw new WaitAbortedError(`mariadbd exited:\n${proc.tail()}`);
    const conn = await mysql.createConnection({ socketPath: socket, user: "root" });
    await conn.end();
    return true;
  });
  return { index, port, socket, process: proc };
}

/** Creates the services' account and the databases this server holds (idempotent). */
export async function provisionMariadb(server: MariadbServer, databases: string[], password: string): Promise<void> {
  const conn = await mysql.createConnection({ socketPath: server.socket, user: "root" });
  try {
    for (const db of databases) await conn.query(`CREATE DATABASE IF NOT EXISTS \`${db}\``);
    await conn.query("CREATE USER IF NOT EXISTS 'satchel'@'127.0.0.1' IDENTIFIED BY ?", [password]);
    await conn.query("ALTER USER 'satchel'@'127.0.0.1' IDENTIFIED BY ?", [password]);
    await conn.query("GRANT ALL PRIVILEGES ON `satchel\\_%`.* TO 'satchel'@'127.0.0.1'");
  } finally {
    await conn.end();
  }
}
