import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import mysql from "mysql2/promise";
import type { RowDataPacket } from "mysql2/promise";
import { SatchelClient } from "@satchel/client-sdk";
import { indexShardOf, ShardPools } from "@satchel/proto";
import { startCluster, waitServing, type Cluster } from "../cluster/cluster.js";
import { liveness, minioClient, type MinioNode } from "../cluster/minio.js";
import { caOf } from "../cluster/trust.js";
import { killLeftovers, waitFor } from "../cluster/process.js";
import { BUSY_CLIENT_LIMITS, loadClusterConfig } from "../config.js";
import type { ManagedProcess } from "../cluster/process.js";
import { createAccount } from "../testing/accounts.js";
import { deleteShardViaS3, fillDrive, flipBit, flipBitViaS3, mountSmallDrives, releaseDrives, truncateShard, wipeDisk, wipeDiskUnderRunningNode } from "../testing/disk-faults.js";
import { ServiceProcesses } from "../testing/service-process.js";
import { describeStep, prng, scheduleFor, type FaultStep, type Service, type ShardDamage } from "./schedule.js";

/** One seed's result: what was done, what was seen, and every broken invariant. */
export interface NemesisReport {
  seed: number;
  lethal: boolean;
  steps: string[];
  faultsInjected: number;
  operations: { uploads: number; overwrites: number; reads: number; deletes: number; failed: number };
  filesChecked: number;
  blocksDestroyed: string[];
  shardsDamaged: number;
  /** Seconds from "everything is back" to every live block at k+m (lost ones aside). */
  redundancySeconds: number;
  violations: string[];
  /** Steps this machine could not apply (and why): not faults injected. */
  stepsSkipped: string[];
}

export interface NemesisOptions {
  /** Fault steps per schedule. */
  faults: number;
  /** Client loops running during the faults. */
  clients: number;
  /**
   * Accounts the clients belong to (client i to account i mod accounts): each account's root is a
   * namespace of its own, spread over the metadata shards, so several namespaces of one shard commit
   * at once and their reference changes interleave in its outbox.
   */
  accounts?: number;
  log?: (line: string) => void;
}

const shardKey = (hex: string, index: number) => `blocks/${hex.slice(0, 2)}/${hex}.${index}`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const codeName = (err: unknown) => Code[ConnectError.from(err).code] ?? String(err);

/** What a path may hold: one content when every operation on it was acknowledged, more after a failed one. */
type Possible = (Buffer | null)[];

/**
 * Runs nemesis schedules against a cluster it owns: faults from a seeded schedule while client
 * loops upload, overwrite, read and delete files, then heals and checks the invariants. The
 * harness keeps its own record of what it destroyed beyond repair, across seeds (the verifier
 * reports the whole platform).
 */
export class Nemesis {
  private readonly workDir: string;
  /** Blocks destroyed beyond repair by lethal steps, across every seed run on this cluster, and when. */
  readonly destroyed = new Set<string>();
  private readonly destroyedAt = new Map<string, number>();
  /**
   * Destroyed blocks that an upload begun after their destruction holds (contents are shared, see
   * content()): if the block was recorded lost by then, that upload sent its bytes again and healed
   * it; if not, the upload referenced it as it was. Either outcome is right, and the checks accept
   * both; the verifier then says which (a healed block is no longer destroyed).
   */
  private readonly maybeHealed = new Set<string>();
  /** Blocks of the previous seed's files, proven whole when it ended: more targets for damage. */
  private earlier: string[] = [];
  /** Removes the previous seed's files for good once the next seed has used them as targets. */
  private cleanUpPrevious?: () => Promise<void>;
  private metaShards?: ShardPools;
  private blockIndex?: ShardPools;
  private indexShards: mysql.Pool[] = [];
  private admin!: SatchelClient;
  /** A second blockserver beside the cluster's: two repairers (and scrubbers) on one queue. */
  private readonly extraBlockservers: ServiceProcesses;
  private secondBlockserver?: ManagedProcess;
  private secondBlockserverUrl?: string;

  constructor(private readonly cluster: Cluster, private readonly opts: NemesisOptions) {
    this.workDir = join(cluster.config.stateDir, "nemesis-work");
    this.extraBlockservers = new ServiceProcesses("blockserver", cluster.endpoints, cluster.config.stateDir);
  }

  async open(): Promise<void> {
    mkdirSync(this.workDir, { recursive: true });
    const e = this.cluster.endpoints;
    // The metaserver's shards (outboxes, versions) and the blockserver's index shards, read straight.
    const ca = caOf(e);
    this.metaShards = await ShardPools.open(e.directoryUrl, { shardConnections: 2, tls: ca && { ca } });
    this.blockIndex = await ShardPools.open(e.blockIndexUrl, { shardConnections: 2, tls: ca && { ca }, mapTable: "index_shards" });
    this.indexShards = this.blockIndex.shards;
    this.admin = new SatchelClient({ metaserverUrl: e.metaserver, blockserverUrl: e.blockserver, token: e.serviceToken, ca: caOf(e) });
    const second = await this.extraBlockservers.start("blockserver-2", 60);
    this.secondBlockserver = second.proc;
    this.secondBlockserverUrl = second.url;
  }

  async close(): Promise<void> {
    await this.extraBlockservers.stopAll();
    await Promise.all([this.metaShards?.close(), this.blockIndex?.close()]);
    rmSync(this.workDir, { recursive: true, force: true });
  }

  private get m(): number {
    return this.cluster.config.parityShards;
  }

  async run(seed: number): Promise<NemesisReport> {
    const schedule = scheduleFor(seed, {
      nodes: this.cluster.minio.length, parityShards: this.m, faults: this.opts.faults,
      mariadbServers: this.cluster.mariadb.length, metadataShards: this.metaShards!.shards.length,
      leaseMs: Number(NEMESIS_SERVICE_SETTINGS.SATCHEL_RESERVE_LEASE_SECONDS) * 1000,
    });
    const report: NemesisReport = {
      seed, lethal: schedule.lethal, steps: schedule.steps.map(describeStep), faultsInjected: 0,
      operations: { uploads: 0, overwrites: 0, reads: 0, deletes: 0, failed: 0 }, filesChecked: 0,
      blocksDestroyed: [], shardsDamaged: 0, redundancySeconds: 0, violations: [], stepsSkipped: [],
    };
    const log = (line: string) => this.opts.log?.(`[nemesis ${seed}] ${line}`);
    const e = this.cluster.endpoints;
    const accounts: Awaited<ReturnType<typeof createAccount>>[] = [];
    for (let a = 0; a < (this.opts.accounts ?? 1); a++) accounts.push(await createAccount(e, `nemesis${seed}a${a}`));
    const clients = Array.from({ length: this.opts.clients }, (_, i) => new SatchelClient({
      metaserverUrl: e.metaserver, blockserverUrl: e.blockserver, credentials: { ...accounts[i % accounts.length], deviceName: `nemesis-${i}` }, concurrency: 2, ca: caOf(e),
    }));
    const files = new Map<string, Possible>();
    const faults = new FaultState();
    let faulting = true;
    const workload = clients.map((client, c) => this.clientLoop(seed, c, client, files, report, () => faulting));
    try {
      for (const step of schedule.steps) {
        log(describeStep(step));
        const skipped = report.stepsSkipped.length;
        try {
          await this.apply(step, files, clients, faults, report);
          if (step.kind !== "wait" && report.stepsSkipped.length === skipped) report.faultsInjected++;
        } catch (err) {
          report.violations.push(`step "${describeStep(step)}" could not be applied: ${(err as Error).message}`);
        }
      }
    } finally {
      faulting = false;
      await Promise.all(workload);
      await this.healAll(faults);
    }
    // Everything is back: redundancy must return to k+m for every live block, with no operator.
    const healed = Date.now();
    try {
      // Blocks of removed files go first, so the scrub does not read them.
      await this.admin.blockAdmin.runGarbageCollection({ graceSeconds: 0 }, { timeoutMs: 120_000 }).catch(() => undefined);
      // Silent bit rot in a shard nobody reads is found by the scrubber, not by the index: the
      // bound on "back to k+m" includes one scrub pass (here unthrottled, started at once).
      await this.admin.blockAdmin.runScrub({ wait: true, unthrottled: true }, { timeoutMs: 300_000 });
      await this.waitFullRedundancy();
      report.redundancySeconds = (Date.now() - healed) / 1000;
    } catch (err) {
      report.violations.push((err as Error).message);
    }
    await this.checkFiles(clients, files, report);
    await this.checkVerifier(report).catch((err: Error) => report.violations.push(`the verifier failed: ${err.message}`));
    await this.checkReferenceCounts(report).catch((err: Error) => report.violations.push(`reference counts could not be checked: ${err.message}`));
    // The platform stays small from seed to seed (scrub and verifier read everything): the previous
    // seed's files go for good, and this seed's blocks become the next one's extra targets.
    await this.cleanUpPrevious?.().catch((err: Error) => log(`clean-up of the previous seed failed: ${err.message}`));
    this.earlier = report.violations.length === 0 ? (await this.currentBlocks(files, clients)).filter((h) => !this.destroyed.has(h)) : [];
    this.cleanUpPrevious = () => this.removeFiles(clients, files);
    log(`${report.filesChecked} files checked, ${report.violations.length} violations, redundancy back in ${report.redundancySeconds.toFixed(1)} s`);
    return report;
  }

  /** Every file of a seed, to the trash and then gone for good (its blocks go to GC). */
  private async removeFiles(clients: SatchelClient[], files: Map<string, Possible>): Promise<void> {
    for (const [c, client] of clients.entries()) {
      await client.meta.delete({ path: `/c${c}` }).catch(() => undefined);
      await client.meta.permanentlyDelete({ path: `/c${c}` }).catch(() => undefined);
    }
    // Files deleted one by one before are trash entries of their own.
    for (const path of files.keys()) await ownerOf(clients, path).meta.permanentlyDelete({ path }).catch(() => undefined);
  }

  /** One client: upload, overwrite, read and delete its own files until the faults end. */
  private async clientLoop(
    seed: number, c: number, client: SatchelClient, files: Map<string, Possible>, report: NemesisReport, running: () => boolean,
  ): Promise<void> {
    const rnd = prng(seed * 31 + c + 1);
    const mine: string[] = [];
    let n = 0;
    while (running()) {
      const roll = rnd();
      const existing = mine.filter((p) => files.get(p)!.some((x) => x !== null));
      try {
        if (roll < 0.45 || existing.length === 0) {
          const path = `/c${c}/f${n++}.bin`;
          mine.push(path);
          files.set(path, [null]);
          report.operations.uploads++;
          await this.upload(client, path, content(rnd, seed), files);
        } else if (roll < 0.65) {
          report.operations.overwrites++;
          await this.upload(client, existing[Math.floor(rnd() * existing.length)], content(rnd, seed), files);
        } else if (roll < 0.9) {
          report.operations.reads++;
          const path = existing[Math.floor(rnd() * existing.length)];
          await this.readAndCheck(client, path, files.get(path)!, report, false);
        } else {
          report.operations.deletes++;
          const path = existing[Math.floor(rnd() * existing.length)];
          const possible = files.get(path)!;
          files.set(path, [...possible, null]);
          await client.meta.delete({ path });
          files.set(path, [null]);
        }
      } catch (err) {
        report.operations.failed++;
        const code = ConnectError.from(err).code;
        if (code === Code.DataLoss) report.violations.push(`client ${c}: DATA_LOSS during a write or delete: ${(err as Error).message}`);
        await sleep(100);
      }
    }
  }

  private async upload(client: SatchelClient, path: string, data: Buffer, files: Map<string, Possible>): Promise<void> {
    const before = files.get(path) ?? [null];
    files.set(path, [...before, data]);
    const local = join(this.workDir, randomUUID());
    writeFileSync(local, data);
    const started = Date.now();
    try {
      const parent = await client.currentVersion(path);
      const res = await client.uploadAs(local, path, parent?.revision ?? 0n, randomUUID(), undefined, parent?.blocks);
      for (const b of res.file.blocks) {
        const hex = Buffer.from(b.hash).toString("hex");
        if (started > (this.destroyedAt.get(hex) ?? Infinity)) this.maybeHealed.add(hex);
      }
      // A stale parent (an earlier "failed" commit that did land) keeps this upload as a conflicted
      // copy: the path itself holds what it held.
      if (res.conflict) {
        files.set(path, before);
        return;
      }
      files.set(path, [data]);
    } finally {
      rmSync(local, { force: true });
    }
  }

  /**
   * Reads a path's current version block by block and compares it with what the path may hold.
   * During faults UNAVAILABLE and friends are fine; wrong bytes never are, nor DATA_LOSS for a
   * block the harness did not destroy.
   */
  private async readAndCheck(client: SatchelClient, path: string, possible: Possible, report: NemesisReport, final: boolean): Promise<void> {
    let file;
    try {
      file = (await client.meta.getFileMetadata({ path })).file;
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) {
        if (!possible.includes(null)) report.violations.push(`${path}: NOT_FOUND, but it was acknowledged`);
        return;
      }
      if (final) report.violations.push(`${path}: metadata unreadable after healing: ${codeName(err)} ${(err as Error).message}`);
      return;
    }
    if (!file || file.isFolder) return;
    const lost = file.blocks.filter((b) => this.destroyed.has(Buffer.from(b.hash).toString("hex")) && !this.maybeHealed.has(Buffer.from(b.hash).toString("hex")));
    const parts: Buffer[] = [];
    for (const b of file.blocks) {
      try {
        parts.push(Buffer.from((await client.blocks.getBlock({ hash: b.hash, grant: b.grant })).data));
      } catch (err) {
        const code = ConnectError.from(err).code;
        const hex = Buffer.from(b.hash).toString("hex");
        if (code === Code.DataLoss && !this.destroyed.has(hex)) {
          report.violations.push(`${path}: DATA_LOSS for block ${hex} which the nemesis did not destroy: ${(err as Error).message}`);
        } else if (code !== Code.DataLoss && this.destroyed.has(hex) && final) {
          report.violations.push(`${path}: block ${hex} was destroyed beyond repair, yet the read answered ${codeName(err)} instead of DATA_LOSS`);
        } else if (final && code !== Code.DataLoss) {
          report.violations.push(`${path}: unreadable after healing: ${codeName(err)} ${(err as Error).message}`);
        }
        return;
      }
    }
    if (lost.length > 0 && final) {
      report.violations.push(`${path}: read back although block ${Buffer.from(lost[0].hash).toString("hex")} was destroyed beyond repair`);
      return;
    }
    const data = Buffer.concat(parts);
    if (!possible.some((p) => p !== null && p.equals(data))) {
      report.violations.push(`${path}: read ${data.length} bytes (sha256 ${sha(data)}) that no acknowledged or attempted write of it held`);
    }
  }

  /** A service's process: the cluster's, or the second blockserver's. */
  private service(name: Service): ManagedProcess {
    return name === "blockserver-2" ? this.secondBlockserver! : this.cluster.services[name];
  }

  private serviceUrl(name: Service): string {
    return name === "blockserver-2" ? this.secondBlockserverUrl! : this.cluster.endpoints[name];
  }

  private async apply(step: FaultStep, files: Map<string, Possible>, clients: SatchelClient[], faults: FaultState, report: NemesisReport): Promise<void> {
    const node = (i: number) => this.cluster.minio[i];
    switch (step.kind) {
      case "wait":
        return sleep(step.ms);
      case "kill-node":
        faults.down(step.node);
        return node(step.node).process.kill();
      case "start-node":
        await startNode(node(step.node), caOf(this.cluster.endpoints));
        faults.up(step.node);
        return;
      case "pause-node":
        faults.down(step.node);
        process.kill(node(step.node).process.pid!, "SIGSTOP");
        return;
      case "resume-node":
        process.kill(node(step.node).process.pid!, "SIGCONT");
        faults.up(step.node);
        return;
      case "replace-disk": {
        faults.down(step.node);
        const n = node(step.node);
        if (n.process.running) {
          try { process.kill(n.process.pid!, "SIGCONT"); } catch { /* not paused */ }
          await n.process.kill();
        }
        wipeDisk(this.cluster.config.stateDir, step.node);
        await startNode(n, caOf(this.cluster.endpoints));
        faults.up(step.node);
        return;
      }
      case "fail-disk": {
        const n = node(step.node);
        faults.down(step.node);
        if (n.process.running) {
          try { process.kill(n.process.pid!, "SIGCONT"); } catch { /* not paused */ }
        } else {
          await startNode(n, caOf(this.cluster.endpoints));
        }
        try {
          // The node keeps answering its liveness check, and fails every read and write.
          wipeDiskUnderRunningNode(this.cluster.config.stateDir, step.node);
          await sleep(step.errorMs);
        } finally {
          // Whatever happened, the node comes back onto its new, empty drive.
          await n.process.kill();
          await startNode(n, caOf(this.cluster.endpoints));
          faults.up(step.node);
        }
        return;
      }
      case "fill-disk": {
        const full = fillDrive(this.cluster.config.stateDir, step.node);
        if (!full) {
          report.stepsSkipped.push(`${describeStep(step)}: the node has no drive that can fill (mounting a tmpfs needs root)`);
          return;
        }
        try {
          await sleep(step.fullMs);
        } finally {
          full.free();
        }
        return;
      }
      case "restart-mariadb": {
        const server = this.cluster.mariadb[step.server];
        await server.process.kill();
        server.process.start();
        await waitFor(`mariadb-${step.server} to answer again`, 120_000, async () => {
          const conn = await mysql.createConnection({ socketPath: server.socket, user: "root" });
          await conn.end();
          return true;
        });
        return;
      }
      case "hold-relay": {
        // A change the blockserver refuses (delta 0) heads the shard's outbox: every batch fails.
        const pool = this.metaShards!.shards[step.shard];
        const refused = createHash("sha256").update(`nemesis hold ${step.shard} ${Date.now()}`).digest();
        await pool.query("INSERT INTO block_reference_outbox (hash, delta) VALUES (?, 0)", [refused]);
        try {
          // Collection at the end of the hold: the reservations of the commits made early in it have
          // run out, and their references still wait in the outbox.
          await sleep(step.holdMs);
          await this.admin.blockAdmin.runGarbageCollection({ graceSeconds: 0 }, { timeoutMs: 60_000 });
        } finally {
          await waitFor("the refused change to be removed", 120_000, async () => {
            await pool.query("DELETE FROM block_reference_outbox WHERE hash = ?", [refused]);
            return true;
          });
        }
        return;
      }
      case "restart-service": {
        const svc = this.service(step.service);
        if (step.signal === "SIGKILL") await svc.kill();
        else await svc.stop();
        svc.start();
        await waitServing(step.service, this.serviceUrl(step.service), svc, 60_000, caOf(this.cluster.endpoints));
        return;
      }
      case "pause-service": {
        const pid = this.service(step.service).pid!;
        process.kill(pid, "SIGSTOP");
        await sleep(step.pauseMs);
        process.kill(pid, "SIGCONT");
        return;
      }
      case "gc":
        await this.admin.blockAdmin.runGarbageCollection({ graceSeconds: 0 }, { timeoutMs: 60_000 });
        return;
      case "damage-shard":
        return this.damageShard(step.damage, step.pick, files, clients, faults, report);
      case "destroy-blocks":
        return this.destroyBlocks(step.blocks, step.pick, files, clients, report);
    }
  }

  /** The acknowledged files' current blocks, in a stable order. */
  private async currentBlocks(files: Map<string, Possible>, clients: SatchelClient[]): Promise<string[]> {
    const out = new Set<string>();
    for (const [path, possible] of files) {
      if (possible.length !== 1 || possible[0] === null) continue;
      const file = (await ownerOf(clients, path).meta.getFileMetadata({ path }).catch(() => undefined))?.file;
      for (const b of file?.blocks ?? []) out.add(Buffer.from(b.hash).toString("hex"));
    }
    return [...out].sort();
  }

  /** Where the index places each shard of a block. */
  private async placements(hex: string): Promise<{ index: number; node: number }[]> {
    const hash = Buffer.from(hex, "hex");
    const pool = this.indexShards[indexShardOf(hash, this.indexShards.length)];
    const [rows] = await pool.query<RowDataPacket[]>("SELECT shard_index, node FROM block_shards WHERE hash = ? ORDER BY shard_index", [hash]);
    return rows.map((r) => ({ index: Number(r.shard_index), node: Number(String(r.node).replace("minio-", "")) }));
  }

  /**
   * Damages one shard of a block the platform holds at full redundancy right now, proven by a deep
   * inspection (every shard read and verified) just before. With at most m - 1 disk replacements
   * per seed, no block ever has more than m shards destroyed or unwritten at once: a write below
   * full redundancy (a node down, or one the blockserver thought down) misses at most k + m - quorum
   * = 1 shard, a replacement takes one more, and a block is only damaged when whole.
   */
  private async damageShard(damage: ShardDamage, pick: number, files: Map<string, Possible>, clients: SatchelClient[], faults: FaultState, report: NemesisReport): Promise<void> {
    const candidates = [...await this.currentBlocks(files, clients), ...this.earlier].filter((h) => !this.destroyed.has(h));
    if (candidates.length === 0) this.opts.log?.(`[nemesis] ${damage}: no block to damage yet`);
    for (let attempt = 0; attempt < 5 && candidates.length > 0; attempt++) {
      const hex = candidates.splice((pick + attempt * 7919) % candidates.length, 1)[0];
      const inspection = (await this.admin.blockAdmin.inspectBlocks({ hashes: [Buffer.from(hex, "hex")], unthrottled: true })).blocks[0];
      if (!inspection || inspection.shardsGood !== inspection.shardsTotal || inspection.shardsTotal === 0) {
        this.opts.log?.(`[nemesis] ${damage}: block ${hex.slice(0, 16)} is not whole now (${inspection?.shardsGood}/${inspection?.shardsTotal} good)`);
        continue;
      }
      const shards = (await this.placements(hex)).filter((p) => !faults.isDown(p.node));
      if (shards.length === 0) continue;
      const target = shards[(pick >>> 8) % shards.length];
      const key = shardKey(hex, target.index);
      const n = this.cluster.minio[target.node];
      try {
        if (damage === "delete") await deleteShardViaS3(n, key, caOf(this.cluster.endpoints));
        else if (damage === "truncate") truncateShard(this.cluster.config.stateDir, target.node, key);
        else if (pick % 2 === 0) flipBit(this.cluster.config.stateDir, target.node, key, { seed: pick });
        else await flipBitViaS3(n, key, { seed: pick }, caOf(this.cluster.endpoints));
        report.shardsDamaged++;
      } catch (err) {
        // The object may have moved or been rebuilt a moment ago; that damage simply did not happen.
        this.opts.log?.(`[nemesis] ${damage} of ${key} on ${n.name} skipped: ${(err as Error).message}`);
      }
      return;
    }
  }

  /** Deletes m+1 shards of some blocks on every node at once: those blocks are gone for good. */
  private async destroyBlocks(count: number, pick: number, files: Map<string, Possible>, clients: SatchelClient[], report: NemesisReport): Promise<void> {
    // No repair may be in flight: one that read a block's shards before they were deleted would
    // write a rebuilt shard after, and the block would (rightly) survive what was meant to kill it.
    await this.waitRepairsIdle(60_000).catch(() => undefined);
    const candidates = (await this.currentBlocks(files, clients)).filter((h) => !this.destroyed.has(h));
    const keys: string[] = [];
    for (let i = 0; i < count && candidates.length > 0; i++) {
      const hex = candidates.splice((pick + i * 7919) % candidates.length, 1)[0];
      const indexes = (await this.placements(hex)).map((p) => p.index).slice(0, this.m + 1);
      if (indexes.length < this.m + 1) continue;
      this.destroyed.add(hex);
      this.destroyedAt.set(hex, Date.now());
      report.blocksDestroyed.push(hex);
      keys.push(...indexes.map((index) => shardKey(hex, index)));
    }
    // Every node, not only the recorded one: a copy anywhere would let the block be rebuilt. The
    // queue can still fill after the wait above (a node started a moment ago is noticed by the next
    // probe, and its blocks are queued then): a repair that read k shards before the deletes writes
    // the deleted ones back after them. So look again once repairs are idle, until no copy is left.
    let left = keys;
    for (let round = 0; left.length > 0; round++) {
      if (round === 5) throw new Error(`shards ${left.join(", ")} keep coming back after being deleted`);
      await Promise.all(left.flatMap((key) => this.cluster.minio.map((n) => deleteShardViaS3(n, key, caOf(this.cluster.endpoints)).catch(() => undefined))));
      await sleep(1500);
      await this.waitRepairsIdle(60_000).catch(() => undefined);
      left = await this.keysStillStored(left);
    }
  }

  /** The shard keys some node still holds (a node that does not answer counts as holding them). */
  private async keysStillStored(keys: string[]): Promise<string[]> {
    const held = await Promise.all(keys.map(async (key) => {
      const found = await Promise.all(this.cluster.minio.map((n) => minioClient(n, caOf(this.cluster.endpoints)).statObject(n.bucket, key).then(
        () => true,
        (err: { code?: string }) => err.code !== "NotFound" && err.code !== "NoSuchKey" && err.code !== "NoSuchBucket",
      )));
      return found.some(Boolean);
    }));
    return keys.filter((_, i) => held[i]);
  }

  /** Resumes paused processes and starts stopped ones: the schedule is over. */
  private async healAll(faults: FaultState): Promise<void> {
    for (const n of this.cluster.minio) {
      if (n.process.running) {
        try { process.kill(n.process.pid!, "SIGCONT"); } catch { /* gone */ }
      } else {
        await startNode(n, caOf(this.cluster.endpoints));
      }
      faults.up(n.index);
    }
    for (const name of ["blockserver", "blockserver-2", "metaserver"] as const) {
      const svc = this.service(name);
      if (svc.pid) try { process.kill(svc.pid, "SIGCONT"); } catch { /* gone */ }
      if (!svc.running) svc.start();
      await waitServing(name, this.serviceUrl(name), svc, 60_000, caOf(this.cluster.endpoints));
    }
  }

  /** Waits until the repair queue holds nothing but blocks destroyed on purpose. */
  private async waitRepairsIdle(timeoutMs: number): Promise<void> {
    const destroyed = [...this.destroyed].map((h) => Buffer.from(h, "hex"));
    const none = [Buffer.alloc(32)];
    await waitFor("the repair queue to drain", timeoutMs, async () => {
      for (const pool of this.indexShards) {
        const [q] = await pool.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM repair_queue WHERE hash NOT IN (?)", [destroyed.length ? destroyed : none]);
        if (Number(q[0].n) > 0) return false;
      }
      return true;
    });
  }

  /**
   * Waits until the index records every shard of every live block as stored, every copy of every
   * volume segment too, and the repair queue is empty (lost blocks aside). Probes need a moment to notice a node's new disk, so the first
   * look comes after two probe intervals; the verifier then proves the index right.
   */
  async waitFullRedundancy(timeoutMs = 180_000, settleMs = 2500): Promise<void> {
    await sleep(settleMs);
    const destroyed = [...this.destroyed].map((h) => Buffer.from(h, "hex"));
    const none = [Buffer.alloc(32)];
    let last = "";
    await waitFor("every live block to be back at k+m shards", timeoutMs, async () => {
      let unhealthy = 0;
      let queued = 0;
      for (const pool of this.indexShards) {
        const [rows] = await pool.query<RowDataPacket[]>(
          `SELECT COUNT(DISTINCT s.hash) AS n FROM block_shards s JOIN blocks b ON b.hash = s.hash
            WHERE b.state = 'live' AND s.state NOT IN ('ok', 'rebuilt') AND s.hash NOT IN (?)`, [destroyed.length ? destroyed : none],
        );
        unhealthy += Number(rows[0].n);
        const [q] = await pool.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM repair_queue WHERE hash NOT IN (?)", [destroyed.length ? destroyed : none]);
        queued += Number(q[0].n);
      }
      // Packed blocks: every copy of every volume segment stored again (the scrub found the lost ones).
      const [segments] = await this.blockIndex!.directory.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM volume_segments WHERE missing <> ''");
      const short = Number(segments[0].n);
      last = `${unhealthy} blocks with shards not stored, ${queued} queued for repair, ${short} volume segments short of a copy`;
      return unhealthy === 0 && queued === 0 && short === 0;
    }, () => last);
  }

  private async checkFiles(clients: SatchelClient[], files: Map<string, Possible>, report: NemesisReport): Promise<void> {
    for (const [path, possible] of files) {
      report.filesChecked++;
      await this.readAndCheck(ownerOf(clients, path), path, possible, report, true);
    }
  }

  /**
   * Once the system is quiet (every outbox delivered), each block's count must equal the file
   * versions of every shard that hold it: the relays delivered each change exactly once, whatever
   * order the namespaces committed in, and nothing reconciled the counts meanwhile (the nemesis
   * cluster runs no reconciliation). Read straight from the shards, independently of the metaserver.
   */
  private async checkReferenceCounts(report: NemesisReport): Promise<void> {
    await waitFor("every reference outbox to be delivered", 60_000, async () => {
      for (const pool of this.metaShards!.shards) {
        const [rows] = await pool.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM block_reference_outbox");
        if (Number(rows[0].n) > 0) return false;
      }
      return true;
    });
    const expected = new Map<string, number>();
    for (const pool of this.metaShards!.shards) {
      const [versions] = await pool.query<RowDataPacket[]>("SELECT block_list FROM file_versions");
      for (const v of versions) {
        for (const hex of blocksOfVersion(v.block_list as Buffer)) expected.set(hex, (expected.get(hex) ?? 0) + 1);
      }
    }
    const wrong: string[] = [];
    const seen = new Set<string>();
    let pageToken = "";
    do {
      const page = await this.admin.blockAdmin.listReferenceCounts({ pageToken, pageSize: 2000 });
      for (const c of page.counts) {
        const hex = Buffer.from(c.hash).toString("hex");
        seen.add(hex);
        const want = expected.get(hex) ?? 0;
        if (Number(c.refCount) !== want) wrong.push(`${hex.slice(0, 16)} counted ${c.refCount} (${c.state}), held by ${want} versions`);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    const missing = [...expected.keys()].filter((hex) => !seen.has(hex));
    if (wrong.length) report.violations.push(`${wrong.length} blocks have a reference count other than the versions holding them: ${wrong.slice(0, 5).join("; ")}`);
    if (missing.length) report.violations.push(`${missing.length} blocks that file versions hold are not in the block index (collected while referenced): ${missing.slice(0, 5).map((h) => h.slice(0, 16)).join(", ")}`);
  }

  /** The verifier must report exactly the blocks the nemesis destroyed, and nothing else. */
  private async checkVerifier(report: NemesisReport): Promise<void> {
    const res = await this.admin.metaAdmin.verify({ unthrottled: true }, { timeoutMs: 300_000 });
    const lost = new Set(res.problems.filter((p) => p.kind === "lost").map((p) => Buffer.from(p.hash).toString("hex")));
    const other = res.problems.filter((p) => p.kind !== "lost");
    for (const h of lost) if (!this.destroyed.has(h)) report.violations.push(`verifier reports block ${h} lost, but the nemesis never destroyed it`);
    for (const h of this.destroyed) {
      if (lost.has(h)) continue;
      if (this.maybeHealed.has(h)) {
        // Its bytes came back with an upload: whole again (the verifier says so above if it is not).
        this.destroyed.delete(h);
        this.maybeHealed.delete(h);
        continue;
      }
      if (!(await this.stillReferenced(h))) continue;
      report.violations.push(`the nemesis destroyed block ${h}, but the verifier does not report it lost`);
    }
    for (const p of other.slice(0, 20)) {
      report.violations.push(`verifier reports block ${Buffer.from(p.hash).toString("hex")} as ${p.kind} (${p.shardsGood}/${p.shardsTotal} good) after healing`);
    }
    if (other.length > 20) report.violations.push(`verifier reports ${other.length - 20} more blocks not whole after healing`);
    if (res.referencesToMissingBlocks > 0n) report.violations.push(`verifier: ${res.referencesToMissingBlocks} references point to blocks the index does not hold (a referenced block was deleted)`);
  }

  /** A destroyed block is still referenced by some file version (overwrites may have pruned it). */
  private async stillReferenced(hex: string): Promise<boolean> {
    const res = await this.admin.blockAdmin.getReferenceCounts({ hashes: [Buffer.from(hex, "hex")] });
    return res.counts[0]?.found === true && res.counts[0].refCount > 0n;
  }
}

/** Which nodes the schedule has down or paused now. */
class FaultState {
  private readonly nodes = new Set<number>();

  down(node: number): void {
    this.nodes.add(node);
  }

  up(node: number): void {
    this.nodes.delete(node);
  }

  isDown(node: number): boolean {
    return this.nodes.has(node);
  }
}

/** Starts a stopped node's process without touching its bucket: a new disk stays empty for the blockserver to notice. */
async function startNode(n: MinioNode, ca: Buffer | undefined): Promise<void> {
  if (n.process.running) return;
  n.process.start();
  await waitFor(`${n.name} to answer`, 60_000, async () => (await liveness(n.endpoint, ca)) === 200);
}

/**
 * File contents from the client's PRNG: mostly small files, some of a few MiB (several blocks).
 * A quarter are one of a few contents every client of the seed shares, so one block is referenced
 * from namespaces on several shards and its count moves through several outboxes at once.
 */
function content(rnd: () => number, seed: number): Buffer {
  if (rnd() < 0.25) return randomContent(prng(seed * 7919 + Math.floor(rnd() * 6)));
  return randomContent(rnd);
}

function randomContent(rnd: () => number): Buffer {
  const size = rnd() < 0.85 ? 1024 + Math.floor(rnd() * 250_000) : 500_000 + Math.floor(rnd() * 2_000_000);
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i + 4 <= size; i += 4) out.writeUInt32LE((rnd() * 4294967296) >>> 0, i);
  for (let i = size - (size % 4); i < size; i++) out[i] = (rnd() * 256) | 0;
  return out;
}

/** The client that owns a path: client c writes under /c<c>/. */
function ownerOf(clients: SatchelClient[], path: string): SatchelClient {
  return clients[Number(/^\/c(\d+)\//.exec(path)?.[1] ?? 0)];
}

/**
 * The distinct blocks of a stored version's block list (36 bytes an entry: the SHA-256, then the
 * size), read independently of the metaserver's own code: the checker must not share its bugs.
 */
function blocksOfVersion(packed: Buffer): Set<string> {
  const out = new Set<string>();
  for (let off = 0; off + 36 <= packed.length; off += 36) out.add(packed.subarray(off, off + 32).toString("hex"));
  return out;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex").slice(0, 16);

/**
 * Settings the nemesis cluster's services run with: short node timeouts and probes, so that a
 * schedule of a few seconds sees nodes go down and come back, no background GC (the schedule runs
 * it) and short commit reservations. Passed through the environment the cluster's processes inherit.
 */
export const NEMESIS_SERVICE_SETTINGS: Record<string, string> = {
  SATCHEL_NODE_TIMEOUT_MS: "2000",
  SATCHEL_NODE_PROBE_MS: "500",
  SATCHEL_HEDGE_MS: "500",
  SATCHEL_REPAIR_SWEEP_MS: "2000",
  SATCHEL_GC_INTERVAL_MS: "0",
  // Files below 64 KiB (about a fifth of the workload's) are packed into volumes: packed blocks live
  // through the same faults (their segment copies are what node faults and disk wipes take).
  SATCHEL_PACK_BELOW_BYTES: "65536",
  // A commit's reservation protects its blocks only for seconds: relay holds and service pauses
  // outlast it, and collection must still never take a block whose reference waits in an outbox.
  SATCHEL_RESERVE_LEASE_SECONDS: "4",
  SATCHEL_VERIFY_INTERVAL_SECONDS: "0",
  // Relays held or services paused past a few seconds pause collection outright.
  SATCHEL_GC_RELAY_BOUND_SECONDS: "5",
  // No reconciliation: counts that drift must stay visible to the checker, not be corrected first.
  SATCHEL_RECONCILE_INTERVAL_SECONDS: "0",
  SATCHEL_RECONCILE_AFTER_RELAY_OUTAGE: "off",
  // Clients sign in again after every restart, all from 127.0.0.1.
  SATCHEL_RATE_LIMITS: BUSY_CLIENT_LIMITS,
};

/**
 * The nemesis's clients: eight accounts of one client each, so that every metadata shard holds two
 * namespaces committing at once (namespaces spread over shards by owner).
 */
export const NEMESIS_WORKLOAD = { clients: 8, accounts: 8 };

/** A cluster of its own for the nemesis (it kills and restarts every part of it). */
export async function startNemesisCluster(stateDir: string, portBase: number, log?: (line: string) => void): Promise<Cluster> {
  Object.assign(process.env, NEMESIS_SERVICE_SETTINGS);
  killLeftovers(stateDir);
  releaseDrives(stateDir);
  rmSync(stateDir, { recursive: true, force: true });
  const config = loadClusterConfig({ ...process.env, SATCHEL_STATE_DIR: stateDir, SATCHEL_PORT_BASE: String(portBase), SATCHEL_LOG_LEVEL: "warn" });
  // Each node on a drive of its own that can fill up (fill-disk steps); SATCHEL_NEMESIS_DRIVE_MIB
  // sizes them (raise it with SATCHEL_NEMESIS_REBUILD_MIB above a few hundred MiB).
  const small = mountSmallDrives(stateDir, config.minioNodes, Number(process.env.SATCHEL_NEMESIS_DRIVE_MIB ?? 1024));
  if (!small) log?.("no small drives (mounting a tmpfs needs root): fill-disk steps are skipped");
  try {
    const cluster = await startCluster(config, log);
    const stop = cluster.stop.bind(cluster);
    return Object.assign(cluster, {
      stop: async () => {
        try {
          await stop();
        } finally {
          releaseDrives(stateDir);
        }
      },
    });
  } catch (err) {
    releaseDrives(stateDir);
    throw err;
  }
}

/**
 * Time to restore full redundancy after a disk replacement: stores `mib` MiB of files, replaces
 * one node's disk, and waits until every live block is at k+m again. No operator command is given.
 */
export async function measureDiskRebuild(cluster: Cluster, nemesis: Nemesis, mib: number, node = 4): Promise<{ storedBytes: number; seconds: number; secondsPerGiB: number }> {
  const e = cluster.endpoints;
  const account = await createAccount(e, "rebuild");
  const client = new SatchelClient({ metaserverUrl: e.metaserver, blockserverUrl: e.blockserver, credentials: { ...account, deviceName: "rebuild" }, ca: caOf(e) });
  const dir = join(cluster.config.stateDir, "rebuild-work");
  mkdirSync(dir, { recursive: true });
  const rnd = prng(mib);
  let stored = 0;
  try {
    for (let i = 0; stored < mib * 1024 * 1024; i++) {
      const data = Buffer.allocUnsafe(8 * 1024 * 1024);
      for (let j = 0; j < data.length; j += 4) data.writeUInt32LE((rnd() * 4294967296) >>> 0, j);
      const local = join(dir, `f${i}`);
      writeFileSync(local, data);
      await client.upload(local, `/rebuild/f${i}.bin`);
      rmSync(local);
      stored += data.length;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const n = cluster.minio[node];
  await n.process.kill();
  wipeDisk(cluster.config.stateDir, node);
  const started = Date.now();
  await startNode(n, caOf(cluster.endpoints));
  // The clock runs from the node's start: noticing the new disk (its identity object is written
  // by the blockserver's probe) is part of the recovery.
  const identity = `${n.endpoint}/${n.bucket}/satchel-node/identity`;
  await waitFor("the blockserver to notice the new disk", 60_000, async () => {
    const client = minioClient(n, caOf(cluster.endpoints));
    return client.statObject(n.bucket, "satchel-node/identity").then(() => true, () => false);
  }, () => identity);
  await nemesis.waitFullRedundancy(30 * 60_000, 0);
  const seconds = (Date.now() - started) / 1000;
  return { storedBytes: stored, seconds, secondsPerGiB: seconds / (stored / 2 ** 30) };
}
