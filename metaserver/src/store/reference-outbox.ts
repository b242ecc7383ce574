import type { RowDataPacket } from "mysql2/promise";
import { unpackBlockList } from "../tree/block-list.js";
import type { ShardSet } from "./shards.js";

/** One block reference change waiting in a shard's outbox, in the order it was written. */
export interface ReferenceChange {
  sequence: bigint;
  hash: Buffer;
  delta: number;
}

/**
 * Each shard's outbox of block reference changes (written by namespace transactions, relayed to the
 * blockserver, then deleted), and the shard-wide count of references the reconciler checks against.
 */
export class ReferenceOutbox {
  constructor(private readonly shards: ShardSet) {}

  get shardIds(): number[] {
    return this.shards.shardIds;
  }

  /** The oldest changes of a shard's outbox, and how long the oldest has waited (seconds; 0: none). */
  async pending(shardId: number, limit: number): Promise<{ changes: ReferenceChange[]; oldestAgeSeconds: number }> {
    const [rows] = await this.shards.shard(shardId).query<RowDataPacket[]>(
      "SELECT outbox_id, hash, delta, TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) / 1e6 AS age FROM block_reference_outbox ORDER BY outbox_id LIMIT ?", [limit],
    );
    return {
      changes: rows.map((r) => ({ sequence: BigInt(r.outbox_id), hash: r.hash as Buffer, delta: Number(r.delta) })),
      oldestAgeSeconds: rows.length ? Number(rows[0].age) : 0,
    };
  }

  /**
   * Removes exactly the changes the blockserver has applied. Never a range: ids are taken at insert
   * and namespaces on a shard commit out of order, so below the highest id sent there may be a
   * change that was not yet visible when the batch was read (a range delete would wait for its lock,
   * then remove it unsent).
   */
  async acknowledge(shardId: number, sequences: bigint[]): Promise<void> {
    if (sequences.length === 0) return;
    await this.shards.shard(shardId).query("DELETE FROM block_reference_outbox WHERE outbox_id IN (?)", [sequences]);
  }

  /**
   * References to each block (hex) that one shard's file versions hold, in one consistent snapshot:
   * each version counts once for each distinct block it holds, minus the changes of that snapshot
   * still waiting in the outbox (the blockserver has not seen them yet).
   */
  async referencesOn(shardId: number, into: Map<string, number>): Promise<void> {
    const add = (hex: string, n: number) => into.set(hex, (into.get(hex) ?? 0) + n);
    const conn = await this.shards.shard(shardId).getConnection();
    try {
      await conn.query("START TRANSACTION WITH CONSISTENT SNAPSHOT");
      const [versions] = await conn.query<RowDataPacket[]>("SELECT block_list FROM file_versions");
      for (const v of versions) {
        for (const hex of new Set(unpackBlockList(v.block_list as Buffer).map((b) => Buffer.from(b.hash).toString("hex")))) add(hex, 1);
      }
      const [pending] = await conn.query<RowDataPacket[]>("SELECT hash, SUM(delta) AS d FROM block_reference_outbox GROUP BY hash");
      for (const p of pending) add((p.hash as Buffer).toString("hex"), -Number(p.d));
      await conn.query("COMMIT");
    } finally {
      conn.release();
    }
  }
}
