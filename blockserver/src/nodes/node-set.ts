import type { StorageNodeConfig } from "../config.js";
import { StorageNode } from "./storage-node.js";

/**
 * All storage nodes, with a background probe that brings a node marked unhealthy back as soon as
 * it answers again. Unhealthy nodes are skipped by writes and reads instead of waiting on timeouts.
 */
export class NodeSet {
  readonly byName = new Map<string, StorageNode>();
  private timer?: NodeJS.Timeout;

  constructor(configs: StorageNodeConfig[], timeoutMs: number) {
    for (const c of configs) this.byName.set(c.name, new StorageNode(c, timeoutMs));
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

  /** Probes every node each interval; onProbe hears each result and whether it changed. */
  startProbing(intervalMs: number, onProbe: (node: StorageNode, changed: boolean) => void): void {
    this.timer = setInterval(() => {
      for (const node of this.byName.values()) {
        const before = node.healthy;
        void node.probe().then((now) => onProbe(node, now !== before));
      }
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
