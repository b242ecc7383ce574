#!/usr/bin/env node
import { join } from "node:path";
import { REPO_ROOT } from "../config.js";
import { seedBudget } from "../testing/seed-budget.js";
import { NEMESIS_WORKLOAD, Nemesis, measureDiskRebuild, startNemesisCluster } from "./harness.js";

/**
 * Runs any number of nemesis seeds on a cluster of its own and prints the seeds that fail, so a
 * failure is replayed from its seed:
 *   SATCHEL_NEMESIS_SEEDS=1000 [SATCHEL_NEMESIS_FIRST_SEED=0] node ops/dist/nemesis/bin.js
 *   SATCHEL_NEMESIS_SEEDS=1 SATCHEL_NEMESIS_FIRST_SEED=417 node ops/dist/nemesis/bin.js   (replay seed 417)
 *   SATCHEL_NEMESIS_REBUILD_MIB=1024 ...   also time a disk replacement with that much stored
 * SATCHEL_NEMESIS_MINUTES bounds the run (no new seed starts after it); SIGINT/SIGTERM end it after
 * the seed under way, with its summary.
 */
async function main(): Promise<void> {
  const count = Number(process.env.SATCHEL_NEMESIS_SEEDS ?? 20);
  const first = Number(process.env.SATCHEL_NEMESIS_FIRST_SEED ?? 0);
  const rebuildMib = Number(process.env.SATCHEL_NEMESIS_REBUILD_MIB ?? 0);
  const stateDir = process.env.SATCHEL_NEMESIS_STATE_DIR ?? join(REPO_ROOT, ".satchel", "nemesis");
  const cluster = await startNemesisCluster(stateDir, Number(process.env.SATCHEL_NEMESIS_PORT_BASE ?? 18300));
  const nemesis = new Nemesis(cluster, { faults: Number(process.env.SATCHEL_NEMESIS_FAULTS ?? 8), ...NEMESIS_WORKLOAD, log: process.env.SATCHEL_NEMESIS_VERBOSE ? console.log : undefined });
  await nemesis.open();
  const failing: number[] = [];
  const totals = { faults: 0, files: 0, destroyed: 0, damaged: 0, lethal: 0, redundancy: [] as number[] };
  const budget = seedBudget(process.env.SATCHEL_NEMESIS_MINUTES);
  let ran = 0;
  const started = Date.now();
  try {
    for (let seed = first; seed < first + count && budget.goOn(); seed++, ran++) {
      const r = await nemesis.run(seed);
      totals.faults += r.faultsInjected;
      totals.files += r.filesChecked;
      totals.destroyed += r.blocksDestroyed.length;
      totals.damaged += r.shardsDamaged;
      totals.lethal += r.lethal ? 1 : 0;
      totals.redundancy.push(r.redundancySeconds);
      const ops = r.operations;
      console.log(`seed ${seed} ${r.lethal ? "lethal" : "survivable"}: ${r.violations.length ? "FAIL" : "ok"} — ${r.faultsInjected} faults, ` +
        `${ops.uploads} uploads, ${ops.overwrites} overwrites, ${ops.reads} reads, ${ops.deletes} deletes (${ops.failed} failed), ` +
        `${r.filesChecked} files checked, ${r.shardsDamaged} shards damaged, ${r.blocksDestroyed.length} blocks destroyed, redundancy back in ${r.redundancySeconds.toFixed(1)} s`);
      for (const v of r.violations) console.log(`  ${v}`);
      for (const v of r.stepsSkipped) console.log(`  skipped: ${v}`);
      if (r.violations.length) {
        failing.push(seed);
        console.log(`  schedule: ${r.steps.join("; ")}`);
      }
    }
    if (rebuildMib > 0) {
      const m = await measureDiskRebuild(cluster, nemesis, rebuildMib);
      console.log(`disk replacement: ${(m.storedBytes / 2 ** 20).toFixed(0)} MiB stored, full redundancy back in ${m.seconds.toFixed(1)} s (${m.secondsPerGiB.toFixed(1)} s per GiB stored)`);
    }
  } finally {
    await nemesis.close();
    await cluster.stop();
  }
  const sorted = [...totals.redundancy].sort((a, b) => a - b);
  console.log(`${ran} seeds in ${((Date.now() - started) / 1000).toFixed(0)} s: ${totals.lethal} lethal, ${totals.faults} faults injected, ` +
    `${totals.files} files checked, ${totals.damaged} shards damaged, ${totals.destroyed} blocks destroyed on purpose; ` +
    `redundancy back in p50 ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} s, max ${sorted[sorted.length - 1]?.toFixed(1)} s`);
  console.log(failing.length ? `failing seeds: ${failing.join(" ")}` : "failing seeds: none");
  process.exit(failing.length ? 1 : 0);
}

main().catch((err: Error) => {
  console.error(`nemesis: ${err.stack ?? err.message}`);
  process.exit(2);
});
