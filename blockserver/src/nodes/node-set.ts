import type { StorageNodeConfig } from "../config.js";
import { StorageNode, type ProbeResult } from "./storage-node.js";

/**
 * All storage nodes, with a background probe that brings a node marked unhealthy back as soon as
 * it answers again. Unhealthy nodes are skipped by writes and reads instead of waiting on timeouts.
 */
export class NodeSet {
  readonly byName = new Map<string, StorageNode>();
  private timer?: NodeJS.Timeout;

  /** `ca`: what the nodes' certificates chain to, for nodes served over https. */
  constructor(configs: StorageNodeConfig[], timeoutMs: number, ca?: Buffer) {
    for (const c of configs) this.byName.set(c.name, new StorageNode(c, timeoutMs, ca));
  }

  get names(): string[] {
    return [...this.byName.keys()];
  }

  get(name: string): StorageNode | undefined {
    return this.byName.get(name);
  }

  /** Nodes an operator declared dead: their shards are rebuilt elsewhere and nothing new goes there. */
  private readonly dead = new Set<string>();

  isDead(name: string): boolean {
    return this.dead.has(name);
  }

  /** Replaces the set of dead nodes (from the directory, which every blockserver reads). */
  setDead(names: string[]): void {
    this.dead.clear();
    for (const n of names) if (this.byName.has(n)) this.dead.add(n);
  }

  healthyNames(): string[] {
    return [...this.byName.values()].filter((n) => n.healthy).map((n) => n.name);
  }

  /**
   * Probes every node now and then each interval; onProbe hears each result and whether the node's
   * health changed. The first round runs at once, so a disk replaced while this process was down is
   * noticed at start.
   */
  startProbing(intervalMs: number, onProbe: (node: StorageNode, result: ProbeResult, changed: boolean) => void): Promise<void> {
    const round = () => Promise.all([...this.byName.values()].map(async (node) => {
      if (this.probing.has(node.name)) return;
      this.probing.add(node.name);
      const before = node.healthy;
      try {
        const result = await node.probe();
        onProbe(node, result, node.healthy !== before);
      } finally {
        this.probing.delete(node.name);
      }
    }));
    this.timer = setInterval(() => void round(), intervalMs);
    this.timer.unref();
    return round().then(() => undefined);
  }

  private readonly probing = new Set<string>();

  stop(): void {
    clearInterval(this.timer);
  }
}
