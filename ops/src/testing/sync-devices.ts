import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SatchelClient, SyncAgent, type SyncAgentOptions, type SyncEvent } from "@satchel/client-sdk";
import type { ClusterEndpoints } from "../cluster/cluster.js";

/** One device running the sync agent on a folder of its own. */
export interface SyncDevice {
  name: string;
  dir: string;
  client: SatchelClient;
  agent: SyncAgent;
  events: SyncEvent[];
  /** Stops the agent and removes its folder. */
  close(): Promise<void>;
}

/** A device of an account with an agent on a fresh temporary folder, its state opened, nothing synced yet. */
export async function syncDevice(
  endpoints: ClusterEndpoints, account: { username: string; password: string }, name: string, opts: SyncAgentOptions = {},
): Promise<SyncDevice> {
  const dir = await mkdtemp(join(tmpdir(), `satchel-device-${name}-`));
  const client = new SatchelClient({
    metaserverUrl: endpoints.metaserver, blockserverUrl: endpoints.blockserver,
    credentials: { username: account.username, password: account.password, deviceName: name },
  });
  const events: SyncEvent[] = [];
  const agent = new SyncAgent(client, dir, { ...opts, onEvent: (e) => {
    events.push(e);
    opts.onEvent?.(e);
  } });
  await agent.open();
  return {
    name, dir, client, agent, events,
    close: async () => {
      await agent.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
