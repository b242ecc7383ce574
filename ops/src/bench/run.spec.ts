import { describe, expect, it } from "vitest";
import { SCENARIOS, parseArgs } from "./run.js";

describe("npm run bench's arguments", () => {
  it("default to every scenario, three runs, a cluster of its own", () => {
    const o = parseArgs([]);
    expect(o.scenarios).toEqual(["transfer", "commits", "notify", "sync", "latency"]);
    expect(o).toMatchObject({ runs: 3, smoke: false, useRunning: false });
  });

  it("take scenarios by name and options anywhere; a smoke is one run", () => {
    expect(parseArgs(["sync", "--runs", "5", "commits"])).toMatchObject({ scenarios: ["sync", "commits"], runs: 5 });
    expect(parseArgs(["--smoke", "--runs", "5", "--use-running", "--out", "/tmp/x"])).toMatchObject({ runs: 1, smoke: true, useRunning: true, out: "/tmp/x" });
  });

  it("refuse what they do not know, naming what they do", () => {
    expect(() => parseArgs(["synk"])).toThrow(/unknown argument "synk": scenarios are transfer, commits, notify, sync, latency/);
    expect(() => parseArgs(["--runs", "0"])).toThrow(/--runs/);
    expect(() => parseArgs(["--runs", "two"])).toThrow(/--runs/);
  });

  it("every row compares a Satchel figure, at either size, and names its peer's figure by tool", () => {
    for (const smoke of [false, true]) {
      for (const [name, s] of Object.entries(SCENARIOS)) {
        for (const c of s.comparisons(smoke)) {
          expect(c.scenario).toBe(name);
          expect(c.satchel).toMatch(/^satchel\.[A-Za-z0-9_]+$/);
          if (c.peer) expect(c.peer).toMatch(/^(minio|mysql2|syncthing|restic)\.[A-Za-z0-9_]+$/);
        }
      }
    }
  });
});
