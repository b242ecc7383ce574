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

/** The cluster's services, and the second blockserver the nemesis runs beside it (two repairers). */
export type Service = "blockserver" | "blockserver-2" | "metaserver";

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
  /**
   * A failing drive: emptied under the running node, which then answers every request with errors
   * (its liveness check still passes) for errorMs, until it is restarted onto the new, empty drive.
   */
  | { kind: "fail-disk"; node: number; errorMs: number }
  /**
   * A drive that fills up: the node stays up and serves reads, and refuses writes (507
   * XMinioStorageFull) for fullMs, until space is freed on it.
   */
  | { kind: "fill-disk"; node: number; fullMs: number }
  /** kill -9 a MariaDB server (directory and shards, or shards alone) and start it again. */
  | { kind: "restart-mariadb"; server: number }
  /**
   * A metadata shard's reference relay cannot deliver for holdMs (a change the blockserver refuses
   * heads its outbox) while commits go on; garbage collection runs at its end, past the lease of
   * the commits made early in it.
   */
  | { kind: "hold-relay"; shard: number; holdMs: number }
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
  /** MariaDB servers and metadata shards of the cluster (0: no such faults). */
  mariadbServers?: number;
  metadataShards?: number;
  /** The commit reservation lease: relay holds and service pauses reach past it. */
  leaseMs?: number;
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
  const leaseMs = opts.leaseMs ?? 4000;
  const service = (): Service => { const r = rnd(); return r < 0.4 ? "blockserver" : r < 0.6 ? "blockserver-2" : "metaserver"; };
  const upNodes = () => Array.from({ length: opts.nodes }, (_, i) => i).filter((i) => !down.has(i) && !paused.has(i));
  for (let f = 0; f < opts.faults; f++) {
    const roll = rnd();
    const up = upNodes();
    if (roll < 0.18 && up.length > opts.nodes - opts.parityShards - 1) {
      const node = up[int(up.length)];
      down.add(node);
      steps.push({ kind: "kill-node", node });
    } else if (roll < 0.28 && down.size > 0) {
      const node = [...down][int(down.size)];
      down.delete(node);
      steps.push({ kind: "start-node", node });
    } else if (roll < 0.35 && up.length > opts.nodes - opts.parityShards && paused.size === 0) {
      const node = up[int(up.length)];
      paused.add(node);
      steps.push({ kind: "pause-node", node });
    } else if (roll < 0.40 && paused.size > 0) {
      const node = [...paused][0];
      paused.delete(node);
      steps.push({ kind: "resume-node", node });
    } else if (roll < 0.48 && replacements < opts.parityShards - 1) {
      // One replacement per seed at most leaves budget for shard damage and degraded writes. A
      // failing drive is a replacement too: its node comes back empty.
      const node = anyNode();
      down.delete(node);
      paused.delete(node);
      replacements++;
      if (rnd() < 0.5) steps.push({ kind: "replace-disk", node });
      else steps.push({ kind: "fail-disk", node, errorMs: 500 + int(3000) });
    } else if (roll < 0.55) {
      steps.push({ kind: "restart-service", service: service(), signal: rnd() < 0.8 ? "SIGKILL" : "SIGTERM" });
    } else if (roll < 0.60) {
      // Some pauses outlast the reservation lease of the commits in flight.
      steps.push({ kind: "pause-service", service: service(), pauseMs: rnd() < 0.5 ? 300 + int(1200) : leaseMs + int(2000) });
    } else if (roll < 0.64 && (opts.mariadbServers ?? 0) > 0) {
      steps.push({ kind: "restart-mariadb", server: int(opts.mariadbServers!) });
    } else if (roll < 0.72 && (opts.metadataShards ?? 0) > 0) {
      steps.push({ kind: "hold-relay", shard: int(opts.metadataShards!), holdMs: leaseMs + int(5000) });
    } else if (roll < 0.86) {
      const damage: ShardDamage[] = ["flip", "truncate", "delete"];
      steps.push({ kind: "damage-shard", damage: damage[int(3)], pick: int(1 << 30) });
    } else if (roll < 0.90) {
      steps.push({ kind: "gc" });
    } else if (roll < 0.94 && up.length > 0) {
      steps.push({ kind: "fill-disk", node: up[int(up.length)], fullMs: 1000 + int(4000) });
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
    case "fail-disk": return `fail-disk minio-${s.node} (errors for ${s.errorMs} ms, then a new drive)`;
    case "fill-disk": return `fill-disk minio-${s.node} (full for ${s.fullMs} ms, then space freed)`;
    case "restart-mariadb": return `restart mariadb-${s.server} (SIGKILL)`;
    case "hold-relay": return `hold the reference relay of shard ${s.shard} for ${s.holdMs} ms, then gc`;
    case "restart-service": return `restart ${s.service} (${s.signal})`;
    case "pause-service": return `pause ${s.service} ${s.pauseMs} ms`;
    case "damage-shard": return `${s.damage} a shard (pick ${s.pick})`;
    case "destroy-blocks": return `destroy ${s.blocks} block(s) beyond repair (pick ${s.pick})`;
    case "gc": return "gc (grace 0)";
    case "wait": return `wait ${s.ms} ms`;
  }
}
