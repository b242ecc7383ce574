import { createHash, randomBytes } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { MetaAdminService } from "@satchel/proto/gen/satchel/meta/v1/meta_pb.js";
import { NotifyService, type SubscribeResponse } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { minioClient } from "./cluster/minio.js";
import { REPO_ROOT } from "./config.js";
import { promQuery, startPrometheus, type RunningPrometheus } from "./monitoring/prometheus.js";
import { createAccount, metaClientFor, signIn } from "./testing/accounts.js";
import { collectGarbage, listShardObjects } from "./testing/helpers.js";

const GRAFANA_DIR = join(REPO_ROOT, "ops", "grafana");
const DASHBOARDS_DIR = join(GRAFANA_DIR, "dashboards");
const DASHBOARD_FILES = ["satchel-overview.json", "satchel-storage.json", "satchel-metadata.json", "satchel-sync.json"];
/** The notifyserver's default streams-per-user limit (SATCHEL_NOTIFY_MAX_STREAMS_PER_USER). */
const STREAMS_PER_USER = 32;

const { endpoints, stateDir } = inject("cluster");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Target { expr: string; legendFormat?: string; refId: string }
interface Panel { id: number; type: string; title?: string; gridPos?: unknown; targets?: Target[] }
interface Dashboard { uid?: string; title?: string; templating?: { list: { name: string; type: string; query: string }[] }; panels: Panel[] }

const readDashboard = (file: string) => JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), "utf8")) as Dashboard;

/** What Grafana would send Prometheus for a target, with the rate window a 2 s scrape supports. */
const asQuery = (expr: string) => expr.replaceAll("$__rate_interval", "1m");

/** One Subscribe stream read in the background: whether it was admitted, its events, how it ended. */
class OpenStream {
  readonly events: SubscribeResponse[] = [];
  error?: ConnectError;
  ended = false;
  private readonly abort = new AbortController();

  constructor(client: Client<typeof NotifyService>) {
    void this.pump(client.subscribe({}, { signal: this.abort.signal }));
  }

  private async pump(stream: AsyncIterable<SubscribeResponse>): Promise<void> {
    try {
      for await (const ev of stream) this.events.push(ev);
    } catch (err) {
      this.error = ConnectError.from(err);
    } finally {
      this.ended = true;
    }
  }

  get settled(): boolean {
    return this.ended || this.events.length > 0;
  }

  close(): void {
    this.abort.abort();
  }
}

async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

/** Removes one shard object of a block from whichever storage node holds it. */
async function removeShard(hash: Buffer, index: number): Promise<void> {
  const key = `${hash.toString("hex")}.${index}`;
  for (const [nodeName, keys] of await listShardObjects(endpoints)) {
    const found = keys.find((k) => k.endsWith(`/${key}`));
    if (!found) continue;
    const node = endpoints.storageNodes.find((n) => n.name === nodeName)!;
    await minioClient(node).removeObject(node.bucket, found);
    return;
  }
  throw new Error(`no storage node holds shard ${index} of block ${hash.toString("hex")}`);
}

let prom: RunningPrometheus;
const streams: OpenStream[] = [];

/**
 * Traffic of every kind the panels plot: commits (one conflicting, one over quota), block writes and
 * reads (one degraded), a scrub that finds a missing shard, a garbage collection, notification
 * streams that receive advances, and a stream refused over the per-user limit.
 */
async function driveTraffic(): Promise<void> {
  const account = await createAccount(endpoints, "dashboards");
  const meta = await metaClientFor(endpoints, account);
  const token = await signIn(endpoints, account, "dashboards-blocks");
  const blocks = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token }));
  const notify = createClient(NotifyService, createSatchelTransport({ baseUrl: endpoints.notifyserver, token }));
  const blockAdmin = createClient(BlockAdminService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken }));
  const metaAdmin = createClient(MetaAdminService, createSatchelTransport({ baseUrl: endpoints.metaserver, token: endpoints.serviceToken }));

  // One stream admitted first, then the user's limit filled and overrun: exactly one is refused.
  streams.push(new OpenStream(notify));
  await until("the first Subscribe stream to be admitted", 15_000, () => streams[0].settled);
  expect(streams[0].error).toBeUndefined();
  for (let i = 0; i < STREAMS_PER_USER; i++) streams.push(new OpenStream(notify));
  await until("every Subscribe stream to be admitted or refused", 30_000, () => streams.every((s) => s.settled));
  const refused = streams.filter((s) => s.error?.code === Code.ResourceExhausted);
  expect(refused.length).toBe(1);

  const [a, b, c, loose] = [randomBytes(1_000_000), randomBytes(600_000), randomBytes(600_000), randomBytes(200_000)];
  const grants = new Map<Buffer, Uint8Array>();
  for (const data of [a, b, c, loose]) grants.set(data, (await blocks.putBlock({ hash: sha(data), data })).grant);
  const ref = (data: Buffer) => ({ hash: sha(data), size: data.length, grant: grants.get(data)! });

  const first = await meta.commitFile({ path: "/dashboards/a.bin", blocks: [ref(a)], size: BigInt(a.length) });
  const second = await meta.commitFile({ path: "/dashboards/a.bin", blocks: [ref(b)], size: BigInt(b.length), parentRevision: first.file!.revision });
  expect(second.conflict).toBe(false);
  const stale = await meta.commitFile({ path: "/dashboards/a.bin", blocks: [ref(c)], size: BigInt(c.length), parentRevision: first.file!.revision });
  expect(stale.conflict).toBe(true);
  await until("a stream to be told of the commits", 15_000, () => streams[0].events.some((e) => e.event.case === "advanced"));

  expect(Buffer.from((await blocks.getBlock(ref(a))).data).equals(a)).toBe(true);
  // A data shard gone: the read needs parity (a degraded read) and queues the block for repair.
  await removeShard(sha(b), 0);
  expect(Buffer.from((await blocks.getBlock(ref(b))).data).equals(b)).toBe(true);
  // A shard gone that no read touches: the scrubber finds it. On a fresh cluster the blockserver
  // may still be rebuilding its nodes' new disks and put the shard back before the scrub reaches
  // it (seen once in CI, with this file first); then it is taken away again.
  let missing = 0;
  for (let attempt = 0; attempt < 3 && missing === 0; attempt++) {
    await removeShard(sha(c), 1);
    const scrub = await blockAdmin.runScrub({ wait: true, unthrottled: true }, { timeoutMs: 120_000 });
    missing = Number(scrub.status!.shardsMissing);
  }
  expect(missing).toBeGreaterThanOrEqual(1);
  // The block no file references is collected at once with no grace period.
  expect(await collectGarbage(blockAdmin)).toBeGreaterThanOrEqual(1);

  await metaAdmin.setQuota({ username: account.username, quotaBytes: 1000n });
  const overQuota = await meta.commitFile({ path: "/dashboards/big.bin", blocks: [ref(a)], size: BigInt(a.length) }).catch((e) => ConnectError.from(e));
  expect((overQuota as ConnectError).code).toBe(Code.ResourceExhausted);
  await metaAdmin.setQuota({ username: account.username, quotaBytes: 0n });
  expect(await meta.getFileMetadata({ path: "/dashboards/nothing-here" }).then(() => "found", (e) => ConnectError.from(e).code)).toBe(Code.NotFound);

  // A long poll takes a slot of the same per-user limit: give one stream's back first.
  const admitted = streams.filter((s) => !s.ended);
  admitted[admitted.length - 1].close();
  await until("the closed stream to end", 10_000, () => admitted[admitted.length - 1].ended);
  const [root] = (await meta.listNamespaces({})).namespaces;
  // A change just before: Redis keeps a namespace's latest cursor for seconds only, and the steps
  // above may take longer than that on a busy machine (the poll would then wait for a change).
  await meta.createFolder({ path: `/dashboards/poll-${Date.now()}` });
  const polled = await notify.poll({ cursors: [{ namespaceId: root.namespaceId, cursor: 0n }] });
  expect(polled.advanced.length).toBeGreaterThan(0);
}

beforeAll(async () => {
  // Port + 50 is monitoring.it.spec.ts's Prometheus; this one scrapes every 2 s so the data arrive quickly.
  prom = await startPrometheus(stateDir, endpoints, Number(new URL(endpoints.metaserver).port) + 51, { scrapeSeconds: 2 });
  await driveTraffic();
  await sleep(6_000); // a few scrapes
}, 240_000);

afterAll(async () => {
  for (const s of streams) s.close();
  await prom?.process.stop(5000);
});

describe("Grafana dashboards against a running cluster's Prometheus", () => {
  it("every dashboard file is in the folder the provider reads, and the provisioning names the dev cluster's Prometheus", () => {
    expect(readdirSync(DASHBOARDS_DIR).filter((f) => f.endsWith(".json")).sort()).toEqual([...DASHBOARD_FILES].sort());
    const provider = readFileSync(join(GRAFANA_DIR, "provisioning", "dashboards", "satchel.yml"), "utf8");
    expect(provider).toMatch(/path: .*\/ops\/grafana\/dashboards\s/);
    const datasource = readFileSync(join(GRAFANA_DIR, "provisioning", "datasources", "prometheus.yml"), "utf8");
    expect(datasource).toMatch(/type: prometheus/);
    expect(datasource).toMatch(/url: http:\/\/127\.0\.0\.1:7350\s/);
    const overview = readDashboard("satchel-overview.json");
    console.log(`${overview.title} panels:\n${overview.panels.map((p) => `  ${p.id}. [${p.type}] ${p.title}`).join("\n")}`);
  });

  it.each(DASHBOARD_FILES)("%s: every panel's queries are valid PromQL that return series after some traffic", async (file) => {
    const dashboard = readDashboard(file);
    expect(dashboard.uid).toMatch(/^satchel-/);
    expect(dashboard.title).toBeTruthy();
    expect(dashboard.templating?.list).toContainEqual(expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }));
    expect(dashboard.panels.length).toBeGreaterThan(0);
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    const empty: string[] = [];
    for (const panel of dashboard.panels) {
      expect(panel.title, `panel ${panel.id}`).toBeTruthy();
      expect(panel.gridPos, panel.title).toBeDefined();
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets!) {
        expect(target.refId, panel.title).toBeTruthy();
        const expr = asQuery(target.expr);
        // promQuery throws unless Prometheus answers status "success": the expression parses and runs.
        let series = await promQuery(prom.url, expr);
        const deadline = Date.now() + 30_000;
        while (series.length === 0 && Date.now() < deadline) {
          await sleep(2_000);
          series = await promQuery(prom.url, expr);
        }
        if (series.length === 0) empty.push(`${panel.title} (${target.refId}): ${expr}`);
      }
    }
    expect(empty, `queries with no series in ${file}`).toEqual([]);
  }, 300_000);
});
