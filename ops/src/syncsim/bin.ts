#!/usr/bin/env node
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster } from "../cluster/cluster.js";
import { killLeftovers } from "../cluster/process.js";
import { BUSY_CLIENT_LIMITS, loadClusterConfig, REPO_ROOT } from "../config.js";
import { seedBudget } from "../testing/seed-budget.js";
import { scenarioSwitches, SyncSimulation } from "./harness.js";

/**
 * Runs any number of sync-simulation seeds on a cluster of its own and prints the failing seeds,
 * each replayable from its number (the agents' timing is live, so a replay takes the same steps
 * but may race differently):
 *   SATCHEL_SIM_SEEDS=1000 [SATCHEL_SIM_FIRST_SEED=1] node ops/dist/syncsim/bin.js
 *   SATCHEL_SIM_SEEDS=1 SATCHEL_SIM_FIRST_SEED=417 SATCHEL_SIM_VERBOSE=1 node ops/dist/syncsim/bin.js
 * A failing seed's folders, agent logs and event logs are kept under SATCHEL_SIM_WORK_DIR.
 * SATCHEL_SIM_MINUTES bounds the run (no new seed starts after it).
 */
async function main(): Promise<void> {
  const count = Number(process.env.SATCHEL_SIM_SEEDS ?? 30);
  const first = Number(process.env.SATCHEL_SIM_FIRST_SEED ?? 1);
  const stateDir = process.env.SATCHEL_SIM_STATE_DIR ?? join(REPO_ROOT, ".satchel", "sim");
  killLeftovers(stateDir);
  const config = loadClusterConfig({ ...process.env, SATCHEL_STATE_DIR: stateDir, SATCHEL_PORT_BASE: process.env.SATCHEL_SIM_PORT_BASE ?? "20300", SATCHEL_LOG_LEVEL: "warn",
    SATCHEL_RATE_LIMITS: process.env.SATCHEL_RATE_LIMITS ?? BUSY_CLIENT_LIMITS });
  const cluster = await startCluster(config);
  const sim = new SyncSimulation(cluster.endpoints, {
    devices: Number(process.env.SATCHEL_SIM_DEVICES ?? 3),
    steps: Number(process.env.SATCHEL_SIM_STEPS ?? 100),
    workDir: process.env.SATCHEL_SIM_WORK_DIR ?? join(tmpdir(), "satchel-sim"),
    keepFailed: true,
    stateDir,
    ...scenarioSwitches(process.env),
    log: process.env.SATCHEL_SIM_VERBOSE ? console.log : undefined,
  });
  console.log(`scenarios: ${Object.entries(scenarioSwitches(process.env)).map(([k, on]) => `${k} ${on ? "on" : "off"}`).join(", ")}`);
  const budget = seedBudget(process.env.SATCHEL_SIM_MINUTES);
  const failing: number[] = [];
  const totals = { steps: 0, changes: 0, writes: 0, kills: 0, midPass: 0, offline: 0, serviceFaults: 0, otherWrites: 0, left: 0, removed: 0, versions: 0, conflicts: 0, unverified: 0, settle: [] as number[] };
  const started = Date.now();
  try {
    for (let seed = first; seed < first + count && budget.goOn(); seed++) {
      const seedStarted = Date.now();
      const r = await sim.run(seed);
      totals.steps += r.log.length;
      totals.changes += r.userChanges;
      totals.writes += r.writes;
      totals.serviceFaults += r.serviceFaults;
      totals.otherWrites += r.otherWrites;
      if (r.membershipEnded === "left") totals.left++;
      if (r.membershipEnded === "removed") totals.removed++;
      totals.kills += r.kills;
      totals.midPass += r.killsMidPass;
      totals.offline += r.offlinePeriods;
      totals.versions += r.versionsSynced;
      totals.conflicts += r.conflicts;
      totals.unverified += r.unverifiedEdits;
      totals.settle.push(r.convergeSeconds);
      const failed = r.violations.length > 0;
      console.log(`seed ${seed}: ${failed ? "FAIL" : "ok"} — ${r.userChanges} changes (${r.writes} writes judged), ${r.kills} kills (${r.killsMidPass} mid-pass), ` +
        `${r.offlinePeriods} offline, ${r.serviceFaults} service faults, ${r.otherWrites} ignored names, member ${r.membershipEnded ?? "stayed"}, ` +
        `${r.versionsSynced} versions synced, ${r.conflicts} conflicted copies, ${r.unverifiedEdits} unverified, settled in ${r.convergeSeconds.toFixed(1)} s, ${((Date.now() - seedStarted) / 1000).toFixed(0)} s in all`);
      if (failed) {
        failing.push(seed);
        for (const v of r.violations) console.log(`  ${v}`);
        console.log(`  steps:\n    ${r.log.join("\n    ")}`);
      }
    }
  } finally {
    await sim.close();
    await cluster.stop();
  }
  const sorted = [...totals.settle].sort((a, b) => a - b);
  console.log(`${totals.settle.length} seeds in ${((Date.now() - started) / 1000).toFixed(0)} s: ${totals.changes} user changes (${totals.writes} writes judged), ${totals.kills} SIGKILLs (${totals.midPass} mid-pass), ` +
    `${totals.offline} offline periods, ${totals.serviceFaults} service faults, ${totals.otherWrites} ignored names written, member left ${totals.left} / removed ${totals.removed} times, ${totals.versions} versions synced, ${totals.conflicts} conflicted copies, ${totals.unverified} edits unverifiable (agent killed before logging); ` +
    `settled in p50 ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} s, max ${sorted[sorted.length - 1]?.toFixed(1)} s`);
  console.log(failing.length ? `failing seeds: ${failing.join(" ")}` : "failing seeds: none");
  process.exit(failing.length ? 1 : 0);
}

main().catch((err: Error) => {
  console.error(`sync simulation: ${err.stack ?? err.message}`);
  process.exit(2);
});
