/**
 * The nemesis's fault schedules, made from a seed (Jepsen-style): the same seed gives the same
 * schedule, so a failing run is replayed from its seed. Pure: no process is touched here.
 */

/** A small, fast, seeded PRNG (mulberry32): good enough to pick faults, never for keys. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Service = "blockserver" | "metaserver";

/** Damage to one shard of one block; the block and shard are chosen when the step runs. */
export type ShardDamage = "flip" | "truncate" | "delete";

export type FaultStep =
  /** SIGKILL a storage node: down until a start. */
  | { kind: "kill-node"; node: number }
  | { kind: "start-node"; node: number }
  /** SIGSTOP: the node hangs with its connections open, until a resume. */
  | { kind: "pause-node"; node: number }
  | { kind: "resume-node"; node: number }
  /** Disk replacement: the node is stopped, its data directory emptied and the node started again. */
  | { kind: "replace-disk"; node: number }
  /** kill -9 and start a service process (or SIGSTOP it for pauseMs). */
  | { kind: "restart-service"; service: Service; signal: "SIGKILL" | "SIGTERM" }
  | { kind: "pause-service"; service: Service; pauseMs: number }
  /** Damage to one shard of a block proven whole just before (on disk or through S3). */
  | { kind: "damage-shard"; damage: ShardDamage; pick: number }
  /** Lethal: more than m shards of `blocks` blocks destroyed at once, while every node is up. */
  | { kind: "destroy-blocks"; blocks: number; pick: number }
  /** Garbage collection with no grace period, racing the clients' commits. */
  | { kind: "gc" }
  | { kind: "wait"; ms: number };

export interface Schedule {
  seed: number;
  /** Lethal schedules destroy more than m shards of some blocks; survivable ones never do. */
  lethal: boolean;
  steps: FaultStep[];
}

export interface ScheduleOptions {
  nodes: number;
  parityShards: number;
  /** Fault steps (waits not counted). */
  faults: number;
}

/**
 * A random schedule. The rules that make a survivable schedule survivable: at most m - 1 disk
 * replacements (each destroys one shard of every block), shard damage only to a block the
 * harness has just proven whole (checked when the step runs), and node outages may exceed m (that
 * is unavailability, not loss). Every node and service is back at the end of the schedule. About
 * a third of the seeds are lethal.
 */
export function makeSchedule(seed: number, opts: ScheduleOptions): Schedule {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const lethal = rnd() < 1 / 3;
  const steps: FaultStep[] = [];
  const down = new Set<number>();
  const paused = new Set<number>();
  let replacements = 0;
  let destroyed = false;
  const anyNode = () => int(opts.nodes);
  const upNodes = () => Array.from({ length: opts.nodes }, (_, i) => i).filter((i) => !down.has(i) && !paused.has(i));
  for (let f = 0; f < opts.faults; f++) {
    const roll = rnd();
    const up = upNodes();
    if (roll < 0.22 && up.length > opts.nodes - opts.parityShards - 1) {
      const node = up[int(up.length)];
      down.add(node);
      steps.push({ kind: "kill-node", node });
    } else if (roll < 0.34 && down.size > 0) {
      const node = [...down][int(down.size)];
      down.delete(node);
      steps.push({ kind: "start-node", node });
    } else if (roll < 0.42 && up.length > opts.nodes - opts.parityShards && paused.size === 0) {
      const node = up[int(up.length)];
      paused.add(node);
      steps.push({ kind: "pause-node", node });
    } else if (roll < 0.48 && paused.size > 0) {
      const node = [...paused][0];
      paused.delete(node);
      steps.push({ kind: "resume-node", node });
    } else if (roll < 0.56 && replacements < opts.parityShards - 1) {
      // One replacement per seed at most leaves budget for shard damage and degraded writes.
      const node = anyNode();
      down.delete(node);
      paused.delete(node);
      replacements++;
      steps.push({ kind: "replace-disk", node });
    } else if (roll < 0.64) {
      steps.push({ kind: "restart-service", service: rnd() < 0.6 ? "blockserver" : "metaserver", signal: rnd() < 0.8 ? "SIGKILL" : "SIGTERM" });
    } else if (roll < 0.68) {
      steps.push({ kind: "pause-service", service: rnd() < 0.5 ? "blockserver" : "metaserver", pauseMs: 300 + int(1200) });
    } else if (roll < 0.86) {
      const damage: ShardDamage[] = ["flip", "truncate", "delete"];
      steps.push({ kind: "damage-shard", damage: damage[int(3)], pick: int(1 << 30) });
    } else if (roll < 0.92) {
      steps.push({ kind: "gc" });
    } else if (lethal && !destroyed && down.size === 0 && paused.size === 0) {
      destroyed = true;
      steps.push({ kind: "destroy-blocks", blocks: 1 + int(2), pick: int(1 << 30) });
    } else {
      steps.push({ kind: "wait", ms: 200 + int(800) });
    }
    steps.push({ kind: "wait", ms: 150 + int(700) });
  }
  if (lethal && !destroyed) {
    // Everything comes back first: a lethal step needs every node up (a copy on a down node would survive).
    for (const node of [...paused]) steps.push({ kind: "resume-node", node });
    for (const node of [...down]) steps.push({ kind: "start-node", node });
    paused.clear();
    down.clear();
    steps.push({ kind: "destroy-blocks", blocks: 1 + int(2), pick: int(1 << 30) });
  }
  for (const node of [...paused]) steps.push({ kind: "resume-node", node });
  for (const node of [...down]) steps.push({ kind: "start-node", node });
  return { seed, lethal, steps };
}

/**
 * The schedule of the durability issue, as a fixed seed: two nodes killed while clients read,
 * the whole cluster back, then a third node's disk replaced.
 */
export function issueSchedule(seed: number): Schedule {
  return {
    seed,
    lethal: false,
    steps: [
      { kind: "wait", ms: 800 },
      { kind: "kill-node", node: 1 },
      { kind: "kill-node", node: 2 },
      { kind: "wait", ms: 1500 },
      { kind: "restart-service", service: "blockserver", signal: "SIGTERM" },
      { kind: "restart-service", service: "metaserver", signal: "SIGTERM" },
      { kind: "start-node", node: 1 },
      { kind: "start-node", node: 2 },
      { kind: "wait", ms: 500 },
      { kind: "replace-disk", node: 3 },
      { kind: "wait", ms: 800 },
    ],
  };
}

/** Seed 0 is the issue's schedule; every other seed is random. */
export function scheduleFor(seed: number, opts: ScheduleOptions): Schedule {
  return seed === 0 ? issueSchedule(seed) : makeSchedule(seed, opts);
}

/** A one-line description of a step, for logs and failure reports. */
export function describeStep(s: FaultStep): string {
  switch (s.kind) {
    case "kill-node": case "start-node": case "pause-node": case "resume-node": case "replace-disk":
      return `${s.kind} minio-${s.node}`;
    case "restart-service": return `restart ${s.service} (${s.signal})`;
    case "pause-service": return `pause ${s.service} ${s.pauseMs} ms`;
    case "damage-shard": return `${s.damage} a shard (pick ${s.pick})`;
    case "destroy-blocks": return `destroy ${s.blocks} block(s) beyond repair (pick ${s.pick})`;
    case "gc": return "gc (grace 0)";
    case "wait": return `wait ${s.ms} ms`;
  }
}
