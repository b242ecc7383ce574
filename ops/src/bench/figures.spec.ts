import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { figureLine, parseFigures, renderTable, replaceBetween, shown, stat, tabulate, type Comparison, type Figure } from "./figures.js";

const f = (tool: string, metric: string, value: number, unit = "MB/s"): Figure => ({ tool, metric, value, unit });

describe("benchmark figure lines", () => {
  it("are read from a benchmark's output, progress lines skipped", () => {
    const out = [
      "12:00:01 starting syncthing A",
      "syncthing.small_files_per_s 412.5 files/s",
      "  => syncthing.big_file_time 3.2 s", // the peers harness's progress echo on stderr, not a figure
      "satchel.put_MBps 88 MB/s",
      "restic.backup1_peak_rss 61.3 MiB",
      "satchel.delta_insert_rx_bytes 4194304 bytes",
      "satchel.odd 1.5e-3 s",
      "level 8: raw mysql2...",
    ].join("\n");
    expect(parseFigures(out)).toEqual([
      f("syncthing", "small_files_per_s", 412.5, "files/s"),
      f("satchel", "put_MBps", 88),
      f("restic", "backup1_peak_rss", 61.3, "MiB"),
      f("satchel", "delta_insert_rx_bytes", 4194304, "bytes"),
      f("satchel", "odd", 0.0015, "s"),
    ]);
  });

  it("round-trip: what figureLine prints, parseFigures reads back (to six significant digits)", () => {
    fc.assert(fc.property(
      fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/), fc.stringMatching(/^[A-Za-z0-9_]{1,20}$/),
      fc.double({ min: -1e12, max: 1e12, noNaN: true }), fc.stringMatching(/^[A-Za-z/%]{1,8}$/),
      (tool, metric, value, unit) => {
        const [back] = parseFigures(figureLine(tool, metric, value, unit));
        expect(back.tool).toBe(tool);
        expect(back.metric).toBe(metric);
        expect(back.unit).toBe(unit);
        expect(Math.abs(back.value - value)).toBeLessThanOrEqual(Math.abs(value) * 1e-5 + 1e-300);
      },
    ));
  });

  it("refuses to print a figure that is not a number", () => {
    expect(() => figureLine("satchel", "put_MBps", NaN, "MB/s")).toThrow(/not a number/);
    expect(() => figureLine("satchel", "put_MBps", Infinity, "MB/s")).toThrow(/not a number/);
  });
});

describe("the benchmark table", () => {
  const comparisons: Comparison[] = [
    { scenario: "transfer", label: "put", satchel: "satchel.put_MBps", peer: "minio.put_MBps", higherIsBetter: true },
    { scenario: "sync", label: "1 MiB overwrite", satchel: "satchel.delta_overwrite_time", peer: "syncthing.delta_overwrite_time", higherIsBetter: false },
    { scenario: "notify", label: "fan-out p99", satchel: "satchel.notify_p99_ms", higherIsBetter: false },
    { scenario: "sync", label: "small files", satchel: "satchel.small_files_per_s", peer: "syncthing.small_files_per_s", higherIsBetter: true },
  ];

  it("takes the median and spread of each figure over the runs, and the ratio against the peer of the same runs", () => {
    const runs = [
      [f("satchel", "put_MBps", 40), f("minio", "put_MBps", 100), f("satchel", "delta_overwrite_time", 2, "s"), f("syncthing", "delta_overwrite_time", 1, "s"), f("satchel", "notify_p99_ms", 9, "ms")],
      [f("satchel", "put_MBps", 50), f("minio", "put_MBps", 90), f("satchel", "delta_overwrite_time", 4, "s"), f("syncthing", "delta_overwrite_time", 1, "s"), f("satchel", "notify_p99_ms", 7, "ms")],
      [f("satchel", "put_MBps", 45), f("minio", "put_MBps", 110), f("satchel", "delta_overwrite_time", 3, "s"), f("syncthing", "delta_overwrite_time", 2, "s"), f("satchel", "notify_p99_ms", 8, "ms")],
    ];
    const { rows, missing } = tabulate(runs, comparisons);
    expect(missing).toEqual(["satchel.small_files_per_s"]);
    expect(rows[0]).toEqual({
      scenario: "transfer", label: "put", unit: "MB/s",
      satchel: { median: 45, min: 40, max: 50, runs: 3 }, peer: { name: "minio", median: 100, min: 90, max: 110, runs: 3 }, ratio: 0.45,
    });
    // Lower is better for a time: Satchel taking 3 s where Syncthing takes 1 s stands at 1/3.
    expect(rows[1].ratio).toBeCloseTo(1 / 3);
    expect(rows[2].peer).toBeUndefined();
    expect(rows[2].ratio).toBeUndefined();
  });

  it("names a peer figure that no run printed as missing, and keeps Satchel's row", () => {
    const { rows, missing } = tabulate([[f("satchel", "small_files_per_s", 10, "files/s")]], comparisons.slice(3));
    expect(missing).toEqual(["syncthing.small_files_per_s"]);
    expect(rows[0].peer).toBeUndefined();
  });

  it("median of an even count is the mean of the middle two", () => {
    expect(stat([4, 1, 3, 2])).toEqual({ median: 2.5, min: 1, max: 4, runs: 4 });
  });

  it("renders as Markdown, with the spread only when there were several runs", () => {
    const { rows } = tabulate([[f("satchel", "put_MBps", 45.678), f("minio", "put_MBps", 101.2)]], comparisons.slice(0, 1));
    const md = renderTable(rows, { date: "2026-12-07", machine: "2 cores", runs: 1 });
    expect(md).toContain("| transfer | put | 45.7 MB/s | minio | 101 MB/s | 0.45× |");
    expect(shown(0.012345)).toBe("0.012");
    expect(shown(1234.5)).toBe("1235");
  });

  it("replaces README's table between its markers and nothing else", () => {
    const text = "intro\n<!-- bench -->\nold table\n<!-- /bench -->\nrest\n";
    expect(replaceBetween(text, "<!-- bench -->", "<!-- /bench -->", "new table\n")).toBe("intro\n<!-- bench -->\nnew table\n<!-- /bench -->\nrest\n");
    expect(() => replaceBetween("no markers", "<!-- bench -->", "<!-- /bench -->", "t")).toThrow(/markers/);
  });
});
