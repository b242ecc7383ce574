/**
 * The sync simulation's schedules, made from a seed (Nucleus-style): what each device's user does
 * to its folder while every agent runs, when agents go offline or are killed, when the services the
 * agents use restart or stall, when another client writes names the agents ignore, and when the
 * shared folder's member leaves or is removed. Pure: the harness
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
  | { kind: "wait"; ms: number }
  /** Another client (no agent: a web upload) writes a name every agent ignores ("o3.tmp", "o3~", "o3.part") into a folder the server holds. */
  | { kind: "other-write"; pick: number; size: number }
  /** The agents' metaserver or notifyserver is restarted (down for `downMs`) or stalled (SIGSTOP for `downMs`). */
  | { kind: "service"; service: "metaserver" | "notifyserver"; fault: "restart" | "pause"; downMs: number }
  /** The member's device deletes the shared folder's mount: the member leaves it (for the rest of the seed). */
  | { kind: "leave"; device: number }
  /** The owner removes the member from the shared folder (for the rest of the seed). */
  | { kind: "unshare" };

/** The second account: a member of the owner's shared folder, syncing it on one device. */
export interface SimMember {
  device: number;
  role: "editor" | "viewer";
}

export interface SimSchedule {
  seed: number;
  devices: number;
  /** Files device 0 creates and every device syncs before the steps (shared ground to race on). */
  prelude: { path: string; size: number }[];
  /** The folder the owner (the first account) shares with the member before the prelude. */
  shared: string;
  /** The member's device and role; the other devices are the owner's. None with fewer than 3 devices. */
  member?: SimMember;
  steps: SimStep[];
}

export interface SimOptions {
  devices: number;
  /** Steps, waits not counted. */
  steps: number;
}

/** The issue's scenario: on A `mv X Y` while B appends to X/f1.txt and creates X/new.txt. */
export const ISSUE_SCENARIO_SEED = 0;

export const SHARED_FOLDER = "/S";

const PRELUDE = ["/X/f1.txt", "/X/f2.txt", "/X/f3.txt", "/d0/f0.txt", "/d0/d1/f1.txt", "/f4.txt", "/S/f1.txt", "/S/d0/f2.txt"];

type StepKind = UserAction | "offline" | "kill" | "other-write" | "service" | "leave" | "unshare";
const WEIGHTS: [StepKind, number][] = [
  ["create", 16], ["edit", 11], ["append", 7], ["truncate", 3], ["delete", 7], ["rename", 6], ["move", 5],
  ["case-rename", 3], ["create-nfd", 3], ["mkdir", 3], ["rename-folder", 5], ["move-folder", 3], ["delete-folder", 3],
  ["case-rename-folder", 2], ["offline", 4], ["kill", 6], ["other-write", 4], ["service", 3], ["leave", 0.5], ["unshare", 0.5],
];
const TOTAL = WEIGHTS.reduce((n, [, w]) => n + w, 0);

/** A file size: mostly small, sometimes a few MiB (an upload long enough to be killed in the middle). */
function size(rnd: () => number): number {
  return rnd() < 0.1 ? (1 << 20) + Math.floor(rnd() * (3 << 20)) : 1 + Math.floor(rnd() * 48 * 1024);
}

export function makeSimSchedule(seed: number, opts: SimOptions): SimSchedule {
  const prelude = PRELUDE.map((path, i) => ({ path, size: 100 + i * 1000 }));
  const rnd = prng(seed * 7919 + 17);
  // The last device is the member's; a third of the seeds make it a viewer.
  const member: SimMember | undefined = opts.devices >= 3 ? { device: opts.devices - 1, role: rnd() < 1 / 3 ? "viewer" : "editor" } : undefined;
  if (seed === ISSUE_SCENARIO_SEED && opts.devices >= 2) {
    return {
      seed, devices: opts.devices, prelude, shared: SHARED_FOLDER, member: member && { ...member, role: "editor" },
      steps: [
        { kind: "user", device: 0, action: "rename-folder", pick: -1, size: 0 },
        { kind: "user", device: 1, action: "append", pick: -1, size: 200 },
        { kind: "user", device: 1, action: "create", pick: -1, size: 300 },
      ],
    };
  }
  const int = (n: number) => Math.floor(rnd() * n);
  const steps: SimStep[] = [];
  for (let s = 0; s < opts.steps; s++) {
    let roll = rnd() * TOTAL;
    const [kind] = WEIGHTS.find(([, w]) => (roll -= w) < 0) ?? WEIGHTS[0];
    const device = int(opts.devices);
    if (kind === "offline") steps.push({ kind: "offline", device, steps: 2 + int(6) });
    else if (kind === "kill") steps.push({ kind: "kill", device, afterMs: int(400), downMs: 200 + int(1500) });
    else if (kind === "other-write") steps.push({ kind: "other-write", pick: int(2 ** 31), size: 1 + int(8 * 1024) });
    else if (kind === "service") {
      steps.push({ kind: "service", service: rnd() < 0.5 ? "metaserver" : "notifyserver", fault: rnd() < 0.5 ? "restart" : "pause", downMs: 300 + int(2500) });
    } else if (kind === "leave" || kind === "unshare") {
      if (!member) continue;
      steps.push(kind === "leave" ? { kind, device: member.device } : { kind });
    } else steps.push({ kind: "user", device, action: kind, pick: int(2 ** 31), size: size(rnd) });
    // Often at once (the races), sometimes a moment apart, now and then long enough for a pass
    // (about 0.1 s a step in all: a hundred steps take ten seconds of waiting).
    const gap = rnd();
    if (gap >= 0.5) steps.push({ kind: "wait", ms: gap < 0.92 ? int(200) : 400 + int(800) });
  }
  return { seed, devices: opts.devices, prelude, shared: SHARED_FOLDER, member, steps };
}

export function describeSimStep(step: SimStep): string {
  const dev = (d: number) => String.fromCharCode(65 + d);
  switch (step.kind) {
    case "user": return `${dev(step.device)}: ${step.action}${step.pick >= 0 ? ` (pick ${step.pick})` : ""}`;
    case "offline": return `${dev(step.device)}: offline for ${step.steps} steps`;
    case "kill": return `${dev(step.device)}: SIGKILL in ${step.afterMs} ms, back ${step.downMs} ms later`;
    case "wait": return `wait ${step.ms} ms`;
    case "other-write": return `another client writes an ignored name (pick ${step.pick})`;
    case "service": return `${step.fault === "restart" ? "restart" : "SIGSTOP"} the agents' ${step.service} for ${step.downMs} ms`;
    case "leave": return `${dev(step.device)}: leaves the shared folder (rm -r its mount)`;
    case "unshare": return "the owner removes the member from the shared folder";
  }
}
