import type { Pool, ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { recordLength } from "../volume-format/record.js";

/** A volume as the index records it. */
export interface VolumeRecord {
  volumeId: number;
  state: "open" | "sealed" | "compacting" | "deleted";
  generation: number;
  /** The nodes holding the open volume's copies, in preference order. */
  replicas: string[];
  size: number;
}

/** One appended segment of a volume's record stream, and the replicas that did not store it. */
export interface SegmentRecord {
  volumeId: number;
  start: number;
  length: number;
  missing: string[];
}

/** A block appended to a segment: where its record starts in the volume, and its payload size. */
export interface PackedBlock {
  hash: Buffer;
  size: number;
  offset: number;
  recordLength: number;
}

const names = (list: string) => (list ? list.split(",") : []);

/**
 * The second level of the block index: volumes and their segments (in the blockserver's directory),
 * and the packed blocks' rows pointing into them (in the index shards, by hash).
 */
export class VolumeIndex {
  constructor(
    private readonly directory: Pool,
    private readonly shardOf: (hash: Uint8Array) => Pool,
    private readonly byShard: (hashes: Buffer[]) => Map<Pool, number[]>,
  ) {}

  /** A new open volume whose copies go to `replicas`; returns its id. */
  async open(replicas: string[]): Promise<number> {
    const [res] = await this.directory.query<ResultSetHeader>("INSERT INTO volumes (replicas) VALUES (?)", [replicas.join(",")]);
    return res.insertId;
  }

  async get(volumeId: number): Promise<VolumeRecord | undefined> {
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT volume_id, state, generation, replicas, size FROM volumes WHERE volume_id = ?", [volumeId]);
    const r = rows[0];
    return r && { volumeId: Number(r.volume_id), state: r.state, generation: Number(r.generation), replicas: names(r.replicas), size: Number(r.size) };
  }

  /** The segment of a volume holding the record at `offset`. */
  async segmentAt(volumeId: number, offset: number): Promise<SegmentRecord | undefined> {
    const [rows] = await this.directory.query<RowDataPacket[]>(
      "SELECT start, length, missing FROM volume_segments WHERE volume_id = ? AND start <= ? ORDER BY start DESC LIMIT 1", [volumeId, offset],
    );
    const r = rows[0];
    if (!r || Number(r.start) + Number(r.length) <= offset) return undefined;
    return { volumeId, start: Number(r.start), length: Number(r.length), missing: names(r.missing) };
  }

  /**
   * Records a durable segment, then points the blocks appended in it at their records, live at once.
   * The segment row comes first, so a block row never names a segment the index lacks. A block that
   * was stored meanwhile (by another writer) keeps its row: its record here is dead bytes. Returns
   * the hashes now live (whoever's copy), and adds the bytes of this segment's records they point
   * at to the volume's live bytes.
   */
  async commitSegment(segment: SegmentRecord, blocks: PackedBlock[]): Promise<Set<string>> {
    await this.directory.query(
      "INSERT INTO volume_segments (volume_id, start, length, missing) VALUES (?, ?, ?, ?)",
      [segment.volumeId, segment.start, segment.length, [...segment.missing].sort().join(",")],
    );
    await this.directory.query("UPDATE volumes SET size = GREATEST(size, ?) WHERE volume_id = ?", [segment.start + segment.length, segment.volumeId]);
    const live = new Set<string>();
    let ours = 0;
    const hashes = blocks.map((b) => b.hash);
    await Promise.all([...this.byShard(hashes)].map(async ([pool, indexes]) => {
      const mine = indexes.map((i) => blocks[i]);
      await pool.query(
        `INSERT IGNORE INTO blocks (hash, size, data_shards, parity_shards, shard_size, state, volume_id, volume_offset, verified_at) VALUES ?`,
        [mine.map((b) => [b.hash, b.size, 0, 0, 0, "live", segment.volumeId, b.offset, new Date()])],
      );
      const [rows] = await pool.query<RowDataPacket[]>("SELECT hash, state, volume_id, volume_offset FROM blocks WHERE hash IN (?)", [mine.map((b) => b.hash)]);
      for (const r of rows) {
        if (r.state !== "live") continue;
        const hex = (r.hash as Buffer).toString("hex");
        live.add(hex);
        const b = mine.find((x) => x.hash.toString("hex") === hex)!;
        if (Number(r.volume_id) === segment.volumeId && Number(r.volume_offset) === b.offset) ours += b.recordLength;
      }
    }));
    if (ours > 0) await this.directory.query("UPDATE volumes SET live_bytes = live_bytes + ? WHERE volume_id = ?", [ours, segment.volumeId]);
    return live;
  }

  /** A packed block of `size` bytes was collected: its record no longer counts as live. */
  async recordDead(volumeId: number, size: number): Promise<void> {
    await this.directory.query("UPDATE volumes SET live_bytes = live_bytes - ? WHERE volume_id = ?", [recordLength(size), volumeId]);
  }

  /** A volume's bytes of records and of records blocks point at. */
  async usage(volumeId: number): Promise<{ size: number; liveBytes: number } | undefined> {
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT size, live_bytes FROM volumes WHERE volume_id = ?", [volumeId]);
    return rows[0] && { size: Number(rows[0].size), liveBytes: Number(rows[0].live_bytes) };
  }

  /** Segments with copies recorded missing (to be copied from a sound one), oldest first. */
  async segmentsMissingCopies(limit: number): Promise<SegmentRecord[]> {
    const [rows] = await this.directory.query<RowDataPacket[]>(
      "SELECT volume_id, start, length, missing FROM volume_segments WHERE missing <> '' ORDER BY created_at LIMIT ?", [limit],
    );
    return rows.map((r) => ({ volumeId: Number(r.volume_id), start: Number(r.start), length: Number(r.length), missing: names(r.missing) }));
  }

  /** One page of every segment, in (volume, start) order after the one given: the scrub's walk. */
  async segmentPage(after: { volumeId: number; start: number }, limit: number): Promise<SegmentRecord[]> {
    const [rows] = await this.directory.query<RowDataPacket[]>(
      `SELECT volume_id, start, length, missing FROM volume_segments WHERE (volume_id, start) > (?, ?) ORDER BY volume_id, start LIMIT ?`,
      [after.volumeId, after.start, limit],
    );
    return rows.map((r) => ({ volumeId: Number(r.volume_id), start: Number(r.start), length: Number(r.length), missing: names(r.missing) }));
  }

  /**
   * Changes which copies of a segment are missing, only if they are still `was` (compare-and-set:
   * a scrub and a repair, or two repairers, never undo each other's finding). True when it changed.
   */
  async setMissing(segment: SegmentRecord, was: string[], now: string[]): Promise<boolean> {
    const [res] = await this.directory.query<ResultSetHeader>(
      "UPDATE volume_segments SET missing = ? WHERE volume_id = ? AND start = ? AND missing = ?",
      [[...new Set(now)].sort().join(","), segment.volumeId, segment.start, [...was].sort().join(",")],
    );
    return res.affectedRows > 0;
  }

  /** Objects of volume segments, for tests and metrics: how many segments and bytes a volume holds. */
  async segments(volumeId: number): Promise<SegmentRecord[]> {
    const [rows] = await this.directory.query<RowDataPacket[]>("SELECT start, length, missing FROM volume_segments WHERE volume_id = ? ORDER BY start", [volumeId]);
    return rows.map((r) => ({ volumeId, start: Number(r.start), length: Number(r.length), missing: names(r.missing) }));
  }
}
