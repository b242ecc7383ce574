import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { REPO_ROOT } from "./config.js";
import type { Row } from "./bench/figures.js";

const { stateDir } = inject("cluster");
const out = mkdtempSync(join(tmpdir(), "satchel-bench-smoke-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/**
 * The smoke of `npm run bench`: every scenario at tiny sizes, once, against the test cluster, with
 * every peer (plain MinIO, mysql2, Syncthing, restic). Its figures mean nothing on a machine busy
 * with the rest of the suite; what it shows is that the command still runs end to end and fills
 * every row of the table, so it does not rot between full runs.
 */
describe("npm run bench (smoke)", () => {
  it("runs every scenario with its peers and writes a table with every row, its figures and ratios", async () => {
    const child = spawn(process.execPath, [join(REPO_ROOT, "ops", "dist", "bench", "run.js"), "--smoke", "--use-running", "--out", out], {
      env: { ...process.env, SATCHEL_STATE_DIR: stateDir }, stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code, `${stdout}\n${stderr.slice(-4000)}`).toBe(0);
    const report = JSON.parse(readFileSync(join(out, "smoke.json"), "utf8")) as { rows: Row[]; missing: string[]; failures: string[]; scenarios: string[] };
    expect(report.failures).toEqual([]);
    expect(report.missing).toEqual([]);
    expect(report.scenarios).toEqual(["transfer", "commits", "notify", "sync", "latency"]);
    const figures = (scenario: string) => report.rows.filter((r) => r.scenario === scenario);
    for (const scenario of report.scenarios) expect(figures(scenario).length, scenario).toBeGreaterThan(0);
    for (const r of report.rows) {
      expect(r.satchel.median, r.label).toBeGreaterThan(0);
      if (r.peer) expect(r.ratio, r.label).toBeGreaterThan(0);
    }
    // Every peer the issue names is in the table, from this same run.
    expect(new Set(report.rows.map((r) => r.peer?.name).filter(Boolean))).toEqual(new Set(["minio", "mysql2", "syncthing", "restic"]));
    const table = readFileSync(join(out, "smoke.md"), "utf8");
    expect(table).toMatch(/^\| sync \| small files \(4 KiB\) A -> B \| [\d.]+ files\/s \| syncthing \| [\d.]+ files\/s \| [\d.]+× \|$/m);
    console.log(table);
  }, 600_000);
});
