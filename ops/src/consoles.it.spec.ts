import { createHash, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createSatchelTransport } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { NotifyService } from "@satchel/proto/gen/satchel/notify/v1/notify_pb.js";
import { REPO_ROOT } from "./config.js";
import { promQuery, startPrometheus, type RunningPrometheus } from "./monitoring/prometheus.js";
import { createAccount, metaClientFor, signIn } from "./testing/accounts.js";
import { collectGarbage } from "./testing/helpers.js";

const { endpoints, stateDir } = inject("cluster");
const ARTIFACTS_DIR = join(REPO_ROOT, ".satchel", "artifacts");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();

/** The panels each console must render, in page order (the data-panel attributes). */
const CONSOLES = {
  "satchel-overview": ["request-rate", "server-error-ratio", "latency-p99", "targets-up", "storage-nodes-up", "block-redundancy", "notify-streams", "memory-rss"],
  "satchel-storage": ["node-up", "shard-writes", "shard-failures", "block-bytes", "redundancy", "repair", "scrub", "scrub-findings", "gc"],
} as const;

interface RenderedPanel {
  id: string;
  /** Row name → the number in the cell's data-value. */
  values: Record<string, number>;
  /** Names of rows that rendered the "no data" marker. */
  noData: string[];
}

let prom: RunningPrometheus;
let browser: Browser;
const openStream = new AbortController();

/** Loads a console in the browser and reads back every panel's values and "no data" rows. */
async function renderConsole(page: Page, name: string): Promise<{ status: number | undefined; panels: RenderedPanel[] }> {
  const res = await page.goto(`${prom.url}/consoles/${name}.html`, { waitUntil: "load" });
  const panels = await page.$$eval(".satchel-panel", (sections) =>
    sections.map((section) => {
      const values: Record<string, number> = {};
      const noData: string[] = [];
      for (const row of Array.from(section.querySelectorAll("tr"))) {
        const rowName = row.querySelector("th")?.textContent?.trim() ?? "";
        const cell = row.querySelector<HTMLElement>(".satchel-value");
        if (row.matches("[data-no-data]") || row.querySelector("[data-no-data]")) noData.push(rowName);
        else if (cell) values[rowName] = Number(cell.dataset.value);
      }
      return { id: (section as HTMLElement).dataset.panel ?? "", values, noData };
    }));
  return { status: res?.status(), panels };
}

const complete = (panels: RenderedPanel[]) => panels.every((p) => p.noData.length === 0 && Object.keys(p.values).length > 0);

/**
 * Traffic through every service: block writes and reads, commits, a NotFound lookup, and a long
 * poll that answers at once (the account's namespace is past cursor 0): a finished notifyserver RPC.
 */
async function driveTraffic(round: number, clients: Awaited<ReturnType<typeof connect>>): Promise<Buffer[]> {
  const hashes: Buffer[] = [];
  for (let i = 0; i < 3; i++) {
    const data = randomBytes(150_000);
    const hash = sha(data);
    const { grant } = await clients.blocks.putBlock({ hash, data });
    await clients.meta.commitFile({ path: `/consoles/round-${round}-${i}.bin`, blocks: [{ hash, size: data.length, grant }], size: BigInt(data.length) });
    await clients.blocks.getBlock({ hash, grant });
    hashes.push(hash);
  }
  await clients.meta.getFileMetadata({ path: "/consoles/nothing-here" }).catch(() => undefined);
  await clients.notify.poll({ cursors: [{ namespaceId: await rootNamespace(clients), cursor: 0n }] }, { timeoutMs: 15_000 });
  return hashes;
}

/** The account's namespace, from the first advance a Subscribe stream reports. */
async function rootNamespace(clients: Awaited<ReturnType<typeof connect>>): Promise<bigint> {
  for await (const { event } of clients.notify.subscribe({}, { signal: AbortSignal.timeout(15_000) })) {
    if (event.case === "advanced") return event.value.namespaceId;
  }
  throw new Error("the Subscribe stream ended before reporting the account's namespace");
}

async function connect() {
  const account = await createAccount(endpoints, "consoles");
  const token = await signIn(endpoints, account);
  const service = createSatchelTransport({ baseUrl: endpoints.blockserver, token: endpoints.serviceToken });
  return {
    meta: await metaClientFor(endpoints, account),
    blocks: createClient(BlockService, createSatchelTransport({ baseUrl: endpoints.blockserver, token })),
    notify: createClient(NotifyService, createSatchelTransport({ baseUrl: endpoints.notifyserver, token })),
    admin: createClient(BlockAdminService, service),
  };
}

beforeAll(async () => {
  // Ports +50 and +51 belong to the other monitoring tests.
  prom = await startPrometheus(stateDir, endpoints, Number(new URL(endpoints.metaserver).port) + 52, { scrapeSeconds: 2 });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
}, 90_000);

afterAll(async () => {
  openStream.abort();
  await browser?.close();
  await prom?.process.stop(5000);
});

describe("Prometheus console templates", () => {
  it("every panel of the overview and storage consoles shows data after some traffic, in a real browser", async () => {
    const clients = await connect();
    // Rates need two samples of a series: the first round creates the series, the second moves them.
    await sleep(5000);
    const first = await driveTraffic(1, clients);
    await sleep(5000);
    const second = await driveTraffic(2, clients);
    // One stream stays open while the pages render.
    void (async () => {
      for await (const _event of clients.notify.subscribe({}, { signal: openStream.signal })) { /* hold it open */ }
    })().catch(() => undefined);

    // A scrub pass and a collection that deletes one unreferenced block, once the committed blocks
    // hold their references (the relay is asynchronous; a grace of 0 would take them otherwise).
    await clients.admin.runScrub({ wait: true, unthrottled: true });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const counts = (await clients.admin.getReferenceCounts({ hashes: [...first, ...second] })).counts;
      if (counts.every((c) => c.refCount >= 1n)) break;
      if (Date.now() > deadline) throw new Error("references of the committed blocks did not arrive in 30 s");
      await sleep(250);
    }
    const loose = randomBytes(120_000);
    await clients.blocks.putBlock({ hash: sha(loose), data: loose });
    expect(await collectGarbage(clients.admin)).toBeGreaterThanOrEqual(1);

    // A few scrapes so that the scrub, the collection and the open stream are seen.
    const seen = Date.now() + 30_000;
    while (Number((await promQuery(prom.url, "sum(satchel_blockserver_gc_blocks_deleted_total)"))[0]?.value[1] ?? 0) < 1 ||
      Number((await promQuery(prom.url, "sum(satchel_notifyserver_open_streams)"))[0]?.value[1] ?? 0) < 1) {
      if (Date.now() > seen) throw new Error("Prometheus did not scrape the collection and the open stream in 30 s");
      await sleep(1000);
    }
    await sleep(4000);

    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    try {
      for (const [name, panelIds] of Object.entries(CONSOLES)) {
        // Rates settle within a couple of scrapes; re-render until every panel has data or time is up.
        let rendered = await renderConsole(page, name);
        for (const until = Date.now() + 30_000; !complete(rendered.panels) && Date.now() < until; ) {
          await sleep(2000);
          rendered = await renderConsole(page, name);
        }
        expect(rendered.status, `${name} HTTP status`).toBe(200);
        expect(rendered.panels.map((p) => p.id), `${name} panels`).toEqual(panelIds);
        for (const panel of rendered.panels) {
          expect(panel.noData, `${name} / ${panel.id}: rows without data`).toEqual([]);
          expect(Object.keys(panel.values).length, `${name} / ${panel.id}: values`).toBeGreaterThan(0);
          for (const [row, value] of Object.entries(panel.values)) expect(Number.isNaN(value), `${name} / ${panel.id} / ${row} is a number`).toBe(false);
        }
        const screenshot = join(ARTIFACTS_DIR, `console-${name}.png`);
        await page.screenshot({ path: screenshot, fullPage: true });
        console.log(`console ${name}: screenshot ${screenshot}`);

        const panel = (id: string) => rendered.panels.find((p) => p.id === id)!.values;
        if (name === "satchel-overview") {
          expect(Object.keys(panel("request-rate")).sort()).toEqual(["satchel-blockserver", "satchel-metaserver", "satchel-notifyserver"]);
          expect(Object.values(panel("request-rate")).every((perSecond) => perSecond > 0)).toBe(true);
          expect(Object.keys(panel("server-error-ratio"))).toHaveLength(3);
          expect(panel("storage-nodes-up")).toMatchObject({ Up: 6, Known: 6 });
          expect(panel("notify-streams")["Open streams"]).toBeGreaterThanOrEqual(1);
        } else {
          expect(Object.keys(panel("node-up"))).toHaveLength(6);
          expect(Object.values(panel("node-up")).every((up) => up === 1)).toBe(true);
          expect(panel("block-bytes").written).toBeGreaterThan(0);
          expect(panel("scrub")["Bytes verified since start"]).toBeGreaterThan(0);
          expect(panel("gc")["Blocks deleted since start"]).toBeGreaterThanOrEqual(1);
        }
      }
    } finally {
      await page.close();
    }
  }, 240_000);
});
