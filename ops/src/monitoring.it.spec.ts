import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { createHash } from "node:crypto";
import { RULES_DIR, RULE_TESTS_DIR, promQuery, startPrometheus, type RunningPrometheus } from "./monitoring/prometheus.js";
import { createAccount, metaClientFor, signIn } from "./testing/accounts.js";
import { NodeControl } from "./testing/node-control.js";

const run = promisify(execFile);
const { endpoints, stateDir } = inject("cluster");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let prom: RunningPrometheus;

/** Polls a PromQL expression until check() accepts its result (or the time is up). */
async function eventually<T>(what: string, timeoutMs: number, read: () => Promise<T>, check: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (check(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: last ${JSON.stringify(v)}`);
    await sleep(1000);
  }
}

const alertState = async (name: string) => {
  const res = await fetch(`${prom.url}/api/v1/alerts`);
  const body = (await res.json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
  return body.data.alerts.filter((a) => a.labels.alertname === name);
};

beforeAll(async () => {
  // Scrape and evaluate every 2 s so that a test sees changes quickly; the rules are the real ones.
  prom = await startPrometheus(stateDir, endpoints, Number(new URL(endpoints.metaserver).port) + 50, { scrapeSeconds: 2 });
}, 90_000);

afterAll(async () => {
  await prom?.process.stop(5000);
});

describe("Prometheus against the running cluster", () => {
  it("promtool accepts the generated configuration and the rules, and the rules' unit tests pass", async () => {
    await run("promtool", ["check", "config", prom.configFile]);
    const rules = await run("promtool", ["check", "rules", join(RULES_DIR, "satchel-alerts.yml")]);
    expect(rules.stdout).toMatch(/SUCCESS: \d+ rules found/);
    const tests = await run("promtool", ["test", "rules", join(RULE_TESTS_DIR, "satchel-alerts.test.yml")]);
    expect(tests.stdout).toContain("SUCCESS");
  });

  it("scrapes every service, and the key series of each exist after some traffic", async () => {
    const account = await createAccount(endpoints, "monitoring");
    const meta = await metaClientFor(endpoints, account);
    const blocks = createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token: await signIn(endpoints, account) }));
    const data = randomBytes(100_000);
    const hash = createHash("sha256").update(data).digest();
    const { grant } = await blocks.putBlock({ hash, data });
    await meta.commitFile({ path: "/monitored.bin", blocks: [{ hash, size: data.length, grant }], size: BigInt(data.length) });
    await blocks.getBlock({ hash, grant });
    await meta.getFileMetadata({ path: "/nothing-here" }).catch(() => undefined);

    const up = await eventually("all three targets up", 30_000, () => promQuery(prom.url, 'up{job=~"satchel-.*"}'),
      (r) => r.length === 3 && r.every((s) => s.value[1] === "1"));
    expect(up.map((s) => s.metric.job).sort()).toEqual(["satchel-blockserver", "satchel-metaserver", "satchel-notifyserver"]);

    const key = [
      'satchel_metaserver_rpc_requests_total{method="satchel.meta.v1.MetaService/CommitFile",code="OK"}',
      'satchel_metaserver_rpc_requests_total{code="NotFound"}',
      "satchel_metaserver_rpc_duration_seconds_bucket",
      "satchel_metaserver_rpc_in_flight",
      "satchel_metaserver_shard_up",
      "satchel_metaserver_reference_outbox_oldest_seconds",
      "satchel_metaserver_verify_unreadable_blocks",
      'satchel_metaserver_verify_runs_total{result="ok"}',
      'satchel_blockserver_rpc_requests_total{method="satchel.block.v1.BlockService/PutBlock"}',
      "satchel_blockserver_storage_node_up",
      "satchel_blockserver_block_bytes_total",
      "satchel_blockserver_blocks_degraded",
      "satchel_blockserver_blocks_at_risk",
      "satchel_blockserver_scrub_bytes_verified_total",
      "satchel_notifyserver_open_streams",
      "process_resident_memory_bytes",
    ];
    for (const expr of key) {
      const r = await eventually(expr, 20_000, () => promQuery(prom.url, expr), (res) => res.length > 0);
      expect(r.length, expr).toBeGreaterThan(0);
    }
    // Six storage nodes, all up; four metadata shards and the directory, all answering.
    expect((await promQuery(prom.url, "sum(satchel_blockserver_storage_node_up)"))[0].value[1]).toBe("6");
    expect((await promQuery(prom.url, "sum(satchel_metaserver_shard_up)"))[0].value[1]).toBe("5");
  });

  it("a stopped MinIO node fires SatchelStorageNodeDown within its for window, and the alert resolves when the node is back", async () => {
    const nodes = new NodeControl(stateDir, endpoints);
    const node = 5;
    const stopped = Date.now();
    await nodes.kill(node);
    try {
      // for: 1m, plus scrape, probe and evaluation intervals.
      const firing = await eventually("SatchelStorageNodeDown to fire", 100_000, () => alertState("SatchelStorageNodeDown"),
        (alerts) => alerts.some((a) => a.state === "firing" && a.labels.node === `minio-${node}`));
      expect(firing[0].labels.severity).toBe("page");
      const firedAfter = (Date.now() - stopped) / 1000;
      console.log(`SatchelStorageNodeDown fired ${firedAfter.toFixed(0)} s after minio-${node} stopped`);
      expect(firedAfter).toBeGreaterThanOrEqual(55);
    } finally {
      await nodes.start(node);
    }
    await eventually("SatchelStorageNodeDown to resolve", 60_000, () => alertState("SatchelStorageNodeDown"), (alerts) => alerts.length === 0);
  }, 200_000);
});
