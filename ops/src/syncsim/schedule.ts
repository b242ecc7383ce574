/**
 * The sync simulation's schedules, made from a seed (Nucleus-style): what each device's user does
 * to its folder while every agent runs, and when agents go offline or are killed. Pure: the harness
 * resolves each step against the device's folder as it is when the step runs (which file, which
 * folder), so a seed replays the same choices; the agents' timing is live and may differ.
 */
import { prng } from "../nemesis/schedule.js";

/** What a user does in a device's folder (the harness picks the file or folder from `pick`). */
export type UserAction =
  | "create" | "edit" | "append" | "truncate" | "delete" | "rename" | "move" | "case-rename"
  | "create-nfd" | "mkdir" | "rename-folder" | "move-folder" | "delete-folder" | "case-rename-folder";

export type SimStep =
  | { kind: "user"; device: number; action: UserAction; pick: number; size: number }
  /** The agent is stopped (SIGINT) and started again after `steps` more steps: the user goes on editing offline. */
  | { kind: "offline"; device: number; steps: number }
  /** SIGKILL after `afterMs` (mid-upload or mid-apply, whatever it is doing then), started again `downMs` later. */
  | { kind: "kill"; device: number; afterMs: number; downMs: number }
  | { kind: "wait"; ms: number };

export interface SimSchedule {
  seed: number;
  devices: number;
  /** Files device 0 creates and every device syncs before the steps (shared ground to race on). */
  prelude: { path: string; size: number }[];
  steps: SimStep[];
}

export interface SimOptions {
  devices: number;
  /** Steps, waits not counted. */
  steps: number;
}

/** The issue's scenario: on A `mv X Y` while B appends to X/f1.txt and creates X/new.txt. */
export const ISSUE_SCENARIO_SEED = 0;

const PRELUDE = ["/X/f1.txt", "/X/f2.txt", "/X/f3.txt", "/d0/f0.txt", "/d0/d1/f1.txt", "/f4.txt"];

const WEIGHTS: [UserAction | "offline" | "kill", number][] = [
  ["create", 16], ["edit", 11], ["append", 7], ["truncate", 3], ["delete", 7], ["rename", 6], ["move", 5],
  ["case-rename", 3], ["create-nfd", 3], ["mkdir", 3], ["rename-folder", 5], ["move-folder", 3], ["delete-folder", 3],
  ["case-rename-folder", 2], ["offline", 4], ["kill", 6],
];
const TOTAL = WEIGHTS.reduce((n, [, w]) => n + w, 0);

/** A file size: mostly small, sometimes a few MiB (an upload long enough to be killed in the middle). */
function size(rnd: () => number): number {
  return rnd() < 0.1 ? (1 << 20) + Math.floor(rnd() * (3 << 20)) : 1 + Math.floor(rnd() * 48 * 1024);
}

export function makeSimSchedule(seed: number, opts: SimOptions): SimSchedule {
  const prelude = PRELUDE.map((path, i) => ({ path, size: 100 + i * 1000 }));
  if (seed === ISSUE_SCENARIO_SEED && opts.devices >= 2) {
    return {
      seed, devices: opts.devices, prelude,
      steps: [
        { kind: "user", device: 0, action: "rename-folder", pick: -1, size: 0 },
        { kind: "user", device: 1, action: "append", pick: -1, size: 200 },
        { kind: "user", device: 1, action: "create", pick: -1, size: 300 },
      ],
    };
  }
  const rnd = prng(seed * 7919 + 17);
  const int = (n: number) => Math.floor(rnd() * n);
  const steps: SimStep[] = [];
  for (let s = 0; s < opts.steps; s++) {
    let roll = rnd() * TOTAL;
    const [kind] = WEIGHTS.find(([, w]) => (roll -= w) < 0) ?? WEIGHTS[0];
    const device = int(opts.devices);
    if (kind === "offline") steps.push({ kind: "offline", device, steps: 2 + int(6) });
    else if (kind === "kill") steps.push({ kind: "kill", device, afterMs: int(400), downMs: 200 + int(1500) });
    else steps.push({ kind: "user", device, action: kind, pick: int(2 ** 31), size: size(rnd) });
    // Often at once (the races), sometimes a moment apart, now and then long enough for a pass.
    const gap = rnd();
    if (gap >= 0.45) steps.push({ kind: "wait", ms: gap < 0.9 ? int(300) : 800 + int(1500) });
  }
  return { seed, devices: opts.devices, prelude, steps };
}

export function describeSimStep(step: SimStep): string {
  const dev = (d: number) => String.fromCharCode(65 + d);
  switch (step.kind) {
    case "user": return `${dev(step.device)}: ${step.action}${step.pick >= 0 ? ` (pick ${step.pick})` : ""}`;
    case "offline": return `${dev(step.device)}: offline for ${step.steps} steps`;
    case "kill": return `${dev(step.device)}: SIGKILL in ${step.afterMs} ms, back ${step.downMs} ms later`;
    case "wait": return `wait ${step.ms} ms`;
  }
}
