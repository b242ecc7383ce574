import type { Client } from "@connectrpc/connect";
import type { Counter } from "prom-client";
import type { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";

/** Hashes per ReserveBlocks call. */
const RESERVE_CHUNK = 5000;

/**
 * The blocks this metaserver reserved moments ago, so that a commit of a block it just reserved
 * (the next file of a batch upload, a client committing the same content again) skips the
 * blockserver round trip. A reservation is reused only within a quarter of the time the blockserver
 * promised it holds (and never longer than `reuseMs`): the commit that relies on it must finish
 * while the block is still protected from collection. What reuse gives up: a block the scrubber
 * records lost within the window is still committed against, as it would be had it been lost just
 * after a fresh reservation.
 */
export class RecentReservations {
  /** Block (hex) → until when (ms) its reservation may be reused; oldest first. */
  private readonly until = new Map<string, number>();

  constructor(
    private readonly reuseMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether `hex` was reserved recently enough to commit against without asking again. */
  covers(hex: string): boolean {
    const until = this.until.get(hex);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.until.delete(hex);
    return false;
  }

  /**
   * Records blocks the blockserver answered present, promising `reservedSeconds` from the answer;
   * `askedAt` is when the question was sent (the promise began no earlier).
   */
  record(hexes: Iterable<string>, askedAt: number, reservedSeconds: number): void {
    const reuse = Math.min(this.reuseMs, (reservedSeconds * 1000) / 4);
    if (reuse <= 0 || this.maxEntries <= 0) return;
    const until = askedAt + reuse;
    for (const hex of hexes) {
      this.until.delete(hex);
      this.until.set(hex, until);
    }
    for (const oldest of this.until.keys()) {
      if (this.until.size <= this.maxEntries) break;
      this.until.delete(oldest);
    }
  }

  get size(): number {
    return this.until.size;
  }
}

/**
 * The live blocks among `hashes`, each reserved for the commit about to reference it: reserved
 * moments ago by this metaserver, or now. Only live blocks count as present, so a version never
 * points at a block still being written.
 */
export async function reserveLive(
  blocks: Client<typeof BlockService>, recent: RecentReservations, counted: Counter<"answer">, hashes: Uint8Array[], signal: AbortSignal,
): Promise<Set<string>> {
  const live = new Set<string>();
  const ask: { hex: string; hash: Uint8Array }[] = [];
  for (const hash of hashes) {
    const hex = Buffer.from(hash).toString("hex");
    if (recent.covers(hex)) live.add(hex);
    else ask.push({ hex, hash });
  }
  counted.inc({ answer: "recent" }, live.size);
  counted.inc({ answer: "blockserver" }, ask.length);
  for (let i = 0; i < ask.length; i += RESERVE_CHUNK) {
    const chunk = ask.slice(i, i + RESERVE_CHUNK);
    const askedAt = Date.now();
    const { present, reservedSeconds } = await blocks.reserveBlocks({ hashes: chunk.map((c) => c.hash) }, { signal });
    const reserved = chunk.filter((_, j) => present[j]).map((c) => c.hex);
    for (const hex of reserved) live.add(hex);
    recent.record(reserved, askedAt, reservedSeconds);
  }
  return live;
}
