import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { makeSchedule, scheduleFor, type FaultStep } from "./schedule.js";

const opts = { nodes: 6, parityShards: 2, faults: 8, mariadbServers: 2, metadataShards: 4, leaseMs: 4000 };

/** Replays a schedule's node faults: which nodes are down or paused after each step. */
function replay(steps: FaultStep[]) {
  const down = new Set<number>();
  const paused = new Set<number>();
  const states: { down: number; paused: number; step: FaultStep }[] = [];
  for (const s of steps) {
    if (s.kind === "kill-node") down.add(s.node);
    if (s.kind === "start-node") down.delete(s.node);
    if (s.kind === "pause-node") paused.add(s.node);
    if (s.kind === "resume-node") paused.delete(s.node);
    if (s.kind === "replace-disk" || s.kind === "fail-disk") {
      down.delete(s.node);
      paused.delete(s.node);
    }
    states.push({ down: down.size, paused: paused.size, step: s });
  }
  return { states, down, paused };
}

describe("nemesis schedules", () => {
  it("the same seed gives the same schedule, so a failure replays from its seed", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
      expect(makeSchedule(seed, opts)).toEqual(makeSchedule(seed, opts));
    }));
  });

  it("every node is back at the end; lethal steps run only with every node up; survivable ones destroy nothing", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
      const s = makeSchedule(seed, opts);
      const { states, down, paused } = replay(s.steps);
      expect(down.size + paused.size).toBe(0);
      for (const st of states) {
        if (st.step.kind === "destroy-blocks") expect(st.down + st.paused).toBe(0);
        expect(st.down + st.paused).toBeLessThanOrEqual(opts.parityShards + 1);
      }
      const destroys = s.steps.filter((x) => x.kind === "destroy-blocks").length;
      expect(destroys).toBe(s.lethal ? 1 : 0);
      // Each replacement destroys a shard of every block: at most m - 1 leaves room for other damage.
      expect(s.steps.filter((x) => x.kind === "replace-disk" || x.kind === "fail-disk").length).toBeLessThanOrEqual(opts.parityShards - 1);
    }));
  });

  it("seed 0 is the issue's sequence: two nodes down, everything restarted, then a third node's disk replaced", () => {
    const kinds = scheduleFor(0, opts).steps.filter((s) => s.kind !== "wait").map((s) => ("node" in s ? `${s.kind} ${s.node}` : s.kind));
    expect(kinds).toEqual(["kill-node 1", "kill-node 2", "restart-service", "restart-service", "start-node 1", "start-node 2", "replace-disk 3"]);
  });

  it("seeds mix survivable and lethal schedules and every kind of fault", () => {
    const schedules = Array.from({ length: 200 }, (_, i) => makeSchedule(i + 1, opts));
    const lethal = schedules.filter((s) => s.lethal).length;
    expect(lethal).toBeGreaterThan(30);
    expect(lethal).toBeLessThan(120);
    const kinds = new Set(schedules.flatMap((s) => s.steps.map((x) => x.kind)));
    for (const k of ["kill-node", "start-node", "pause-node", "resume-node", "replace-disk", "fail-disk", "restart-service", "pause-service",
      "restart-mariadb", "hold-relay", "damage-shard", "destroy-blocks", "gc"]) {
      expect(kinds.has(k as FaultStep["kind"])).toBe(true);
    }
    const steps = schedules.flatMap((s) => s.steps);
    // Outages longer than the commit reservation lease: relay holds and service pauses.
    expect(steps.some((x) => x.kind === "hold-relay" && x.holdMs > opts.leaseMs)).toBe(true);
    expect(steps.some((x) => x.kind === "pause-service" && x.pauseMs > opts.leaseMs)).toBe(true);
    expect(new Set(steps.flatMap((x) => (x.kind === "restart-service" ? [x.service] : [])))).toEqual(new Set(["blockserver", "blockserver-2", "metaserver"]));
  });
});
