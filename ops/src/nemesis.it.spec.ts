import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Cluster } from "./cluster/cluster.js";
import { REPO_ROOT } from "./config.js";
import { NEMESIS_WORKLOAD, Nemesis, measureDiskRebuild, startNemesisCluster } from "./nemesis/harness.js";

/**
 * The nemesis: seeded schedules of overlapping faults (storage nodes killed, hung, given new disks
 * or failing under a running process; either of two blockservers and the metaserver killed,
 * restarted and paused past the commit reservation lease; MariaDB servers killed mid-relay; a
 * shard's reference relay held past the lease with GC running meanwhile; drives that fill up
 * (writes refused, reads served) until space is freed; shards bit-flipped,
 * truncated and deleted; GC racing commits) while eight accounts' clients (two namespaces on each
 * metadata shard, sharing some contents) upload, overwrite, read and delete. After healing every
 * acknowledged file reads back, the verifier finds every referenced block whole (or destroyed on
 * purpose), and every block's reference count equals the versions holding it, with no
 * reconciliation run. Seed 0 is the durability issue's schedule. More seeds:
 * SATCHEL_NEMESIS_SEEDS=1000 node ops/dist/nemesis/bin.js.
 */
const seeds = Number(process.env.SATCHEL_NEMESIS_SEEDS ?? 20);
let cluster: Cluster;
let nemesis: Nemesis;

beforeAll(async () => {
  cluster = await startNemesisCluster(join(REPO_ROOT, ".satchel", "nemesis-test"), Number(process.env.SATCHEL_NEMESIS_PORT_BASE ?? 18300));
  nemesis = new Nemesis(cluster, { faults: 8, ...NEMESIS_WORKLOAD, log: process.env.SATCHEL_NEMESIS_VERBOSE ? console.log : undefined });
  await nemesis.open();
});

afterAll(async () => {
  await nemesis?.close();
  await cluster?.stop();
});

describe("nemesis: no block is reported lost while its bytes survive", () => {
  for (let seed = 0; seed < seeds; seed++) {
    it(`seed ${seed}: every acknowledged file reads back, only destroyed blocks are lost, redundancy returns to k+m`, async () => {
      const r = await nemesis.run(seed);
      const ops = r.operations;
      console.log(`seed ${seed} ${r.lethal ? "lethal" : "survivable"}: ${r.faultsInjected} faults, ${ops.uploads + ops.overwrites} writes, ` +
        `${ops.reads} reads, ${ops.deletes} deletes (${ops.failed} failed during faults), ${r.filesChecked} files checked, ` +
        `${r.shardsDamaged} shards damaged, ${r.blocksDestroyed.length} blocks destroyed, redundancy back in ${r.redundancySeconds.toFixed(1)} s`);
      expect(r.violations, `seed ${seed} schedule: ${r.steps.join("; ")}`).toEqual([]);
      // A machine of this kind can apply every step (a drive that fills up needs root to mount).
      expect(r.stepsSkipped).toEqual([]);
      expect(r.filesChecked).toBeGreaterThan(0);
      if (seed === 0) expect(r.steps.some((s) => s.startsWith("replace-disk"))).toBe(true);
    });
  }

  it("a replaced disk is rebuilt to full redundancy with no operator command", async () => {
    const m = await measureDiskRebuild(cluster, nemesis, Number(process.env.SATCHEL_NEMESIS_REBUILD_MIB ?? 64));
    console.log(`disk replacement: ${(m.storedBytes / 2 ** 20).toFixed(0)} MiB stored, full redundancy back in ${m.seconds.toFixed(1)} s (${m.secondsPerGiB.toFixed(1)} s per GiB stored)`);
    expect(m.seconds).toBeGreaterThan(0);
  });
});
