/**
 * The benchmark table, as pure functions: every benchmark (Satchel's own and the peers harness,
 * ../shared/peers/syncthing-pair.sh) prints its figures as lines `<tool>.<metric> <value> <unit>`;
 * `npm run bench` collects them from several runs and sets each Satchel figure beside its peer's
 * from the same run: median, spread and the ratio.
 */

/** One figure a benchmark printed. */
export interface Figure {
  tool: string;
  metric: string;
  value: number;
  unit: string;
}

const FIGURE_LINE = /^([a-z][a-z0-9-]*)\.([A-Za-z0-9_]+) (-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?) (\S+)$/;

/** The figures among a benchmark's output lines (anything else it prints is progress, and skipped). */
export function parseFigures(text: string): Figure[] {
  const out: Figure[] = [];
  for (const line of text.split("\n")) {
    const m = FIGURE_LINE.exec(line.trim());
    if (m) out.push({ tool: m[1], metric: m[2], value: Number(m[3]), unit: m[4] });
  }
  return out;
}

/** A figure's line, as every benchmark prints it. */
export function figureLine(tool: string, metric: string, value: number, unit: string): string {
  if (!Number.isFinite(value)) throw new Error(`${tool}.${metric} is not a number (${value})`);
  return `${tool}.${metric} ${Number.isInteger(value) ? value : Number(value.toPrecision(6))} ${unit}`;
}

/** How one Satchel figure is judged: against which peer figure, and which way is better. */
export interface Comparison {
  scenario: string;
  /** What the row measures, for a person ("small files synced A -> B"). */
  label: string;
  /** "satchel.<metric>" */
  satchel: string;
  /** "<tool>.<metric>" of the peer in the same run, when there is one. */
  peer?: string;
  higherIsBetter: boolean;
}

export interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number;
}

export interface Row {
  scenario: string;
  label: string;
  unit: string;
  satchel: Stat;
  peer?: Stat & { name: string };
  /** Satchel's standing against the peer: above 1 is ahead, below 1 behind (either direction of "better"). */
  ratio?: number;
}

export function stat(values: number[]): Stat {
  if (values.length === 0) throw new Error("no values");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1], runs: sorted.length };
}

/**
 * The table from the figures of every run. A comparison whose Satchel figure no run printed is a
 * missing row (the caller reports it); a ratio needs both sides' medians.
 */
export function tabulate(runs: Figure[][], comparisons: Comparison[]): { rows: Row[]; missing: string[] } {
  const values = new Map<string, { unit: string; values: number[] }>();
  for (const run of runs) {
    for (const f of run) {
      const key = `${f.tool}.${f.metric}`;
      const entry = values.get(key) ?? { unit: f.unit, values: [] };
      entry.values.push(f.value);
      values.set(key, entry);
    }
  }
  const rows: Row[] = [];
  const missing: string[] = [];
  for (const c of comparisons) {
    const own = values.get(c.satchel);
    if (!own) {
      missing.push(c.satchel);
      continue;
    }
    const row: Row = { scenario: c.scenario, label: c.label, unit: own.unit, satchel: stat(own.values) };
    const theirs = c.peer ? values.get(c.peer) : undefined;
    if (c.peer && !theirs) missing.push(c.peer);
    if (c.peer && theirs) {
      row.peer = { name: c.peer.slice(0, c.peer.indexOf(".")), ...stat(theirs.values) };
      const [s, p] = [row.satchel.median, row.peer.median];
      if (s > 0 && p > 0) row.ratio = c.higherIsBetter ? s / p : p / s;
    }
    rows.push(row);
  }
  return { rows, missing };
}

/** A number as the table shows it: three significant digits, no exponent. */
export function shown(x: number): string {
  if (x === 0) return "0";
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  return x.toFixed(Math.min(digits, 3));
}

const spread = (s: Stat) => (s.runs > 1 ? ` (${shown(s.min)}–${shown(s.max)})` : "");

/** The Markdown table: one row per comparison, median (min–max over the runs), the ratio. */
export function renderTable(rows: Row[], header: { date: string; machine: string; runs: number }): string {
  const lines = [
    `Benchmarks of ${header.date} on ${header.machine}; median (min–max) of ${header.runs} run${header.runs === 1 ? "" : "s"}, every peer in the same run. ` +
      "Ratio: Satchel's standing against the peer (above 1: ahead; below 1: behind), whichever way the figure is better.",
    "",
    "| Scenario | Figure | Satchel | Peer | Peer's figure | Ratio |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const peer = r.peer ? `${shown(r.peer.median)} ${r.unit}${spread(r.peer)}` : "—";
    lines.push(`| ${r.scenario} | ${r.label} | ${shown(r.satchel.median)} ${r.unit}${spread(r.satchel)} | ${r.peer?.name ?? "—"} | ${peer} | ${r.ratio === undefined ? "—" : `${r.ratio.toFixed(2)}×`} |`);
  }
  return `${lines.join("\n")}\n`;
}

/** README's text with the part between the two markers replaced by `table`. */
export function replaceBetween(text: string, begin: string, end: string, table: string): string {
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`the markers ${begin} and ${end} are not in order in the text`);
  return `${text.slice(0, from + begin.length)}\n${table}${text.slice(to)}`;
}
