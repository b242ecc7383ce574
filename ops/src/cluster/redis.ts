import { createConnection } from "node:net";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ManagedProcess, waitFor } from "./process.js";

/** Redis for commit fan-out and the latest-cursor cache. It keeps nothing on disk: the journal in MariaDB is the truth. */
export async function startRedis(stateDir: string, host: string, port: number): Promise<ManagedProcess> {
  const dir = join(stateDir, "redis");
  mkdirSync(dir, { recursive: true });
  const proc = new ManagedProcess("redis", stateDir, "redis-server", [
    "--bind", host,
    "--port", String(port),
    "--dir", dir,
    "--save", "",
    "--appendonly", "no",
    "--protected-mode", "no",
  ]);
  proc.start();
  await waitFor(`redis on port ${port}`, 20_000, () => ping(host, port), () => proc.tail());
  return proc;
}

function ping(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port }, () => socket.write("PING\r\n"));
    socket.once("data", (d) => {
      socket.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    socket.once("error", () => resolve(false));
  });
}
