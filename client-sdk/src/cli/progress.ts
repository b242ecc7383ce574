import type { ScrubStatus } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { TransferProgress } from "../client.js";

const SHOW_AFTER_MS = 1000;
const WIDTH = 30;

/**
 * A one-line progress bar on stderr for transfers that take longer than about a second; quick
 * transfers and non-terminal output stay quiet.
 */
export class ProgressBar {
  private readonly started = performance.now();
  private lastDraw = 0;
  private shown = false;

  constructor(private readonly label: string, private readonly stream: NodeJS.WriteStream = process.stderr) {}

  update = (p: TransferProgress): void => {
    const now = performance.now();
    if (!this.stream.isTTY || now - this.started < SHOW_AFTER_MS || now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.shown = true;
    this.stream.write(`\r${render(this.label, p, (now - this.started) / 1000)}`);
  };

  done(p: TransferProgress): void {
    if (this.shown) this.stream.write(`\r${render(this.label, p, (performance.now() - this.started) / 1000)}\n`);
  }
}

export function render(label: string, p: TransferProgress, seconds: number): string {
  const fraction = p.bytesTotal === 0 ? 1 : Math.min(1, p.bytesDone / p.bytesTotal);
  const filled = Math.round(fraction * WIDTH);
  const rate = seconds > 0 ? p.bytesDone / seconds : 0;
  return `${label} [${"#".repeat(filled)}${"-".repeat(WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
    `${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)} ${formatBytes(rate)}/s`;
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function renderScrubStatus(s: ScrubStatus): string {
  const total = Number(s.blocksTotal);
  const done = Number(s.blocksVerified);
  const pct = total ? ((done / total) * 100).toFixed(1) : "100.0";
  const last = s.lastPassFinishedUnix ? new Date(Number(s.lastPassFinishedUnix) * 1000).toISOString() : "never";
  return [
    `scrub:      ${s.running ? "running" : "idle"}, ${s.passesCompleted} passes completed, last finished ${last} (${s.lastPassSeconds.toFixed(1)} s)`,
    `progress:   ${done}/${total} blocks (${pct}%), ${formatBytes(Number(s.bytesVerified))} verified`,
    `rate:       ${formatBytes(s.rateBytesPerSecond)}/s (limit ${formatBytes(Number(s.rateLimitBytesPerSecond))}/s)`,
    `findings:   ${s.shardsMissing} shards missing, ${s.shardsCorrupt} corrupt, ${s.shardsRepaired} repaired, ${s.blocksLost} blocks lost`,
  ].join("\n");
}
