import type { RowDataPacket } from "mysql2/promise";
import { notFound } from "../errors.js";
import type { NamespacePlacement } from "./placement.js";

/** A namespace's journal position, its oldest kept entry and the bytes its current files use. */
export interface CursorState {
  cursor: bigint;
  floor: bigint;
  usedBytes: bigint;
}

/**
 * Reads each namespace's state row on its shard. Its own room, so that what needs usage (quotas)
 * and what changes it (the file tree) both take it in their constructors, neither the other.
 */
export class CursorStates {
  constructor(private readonly placement: Pick<NamespacePlacement, "shardFor" | "forgetPlacement">) {}

  async of(ns: bigint, retried = false): Promise<CursorState> {
    const pool = await this.placement.shardFor(ns);
    const [rows] = await pool.query<RowDataPacket[]>("SELECT cursor_position, journal_floor, used_bytes, state FROM namespace_state WHERE namespace_id = ?", [ns]);
    if ((rows.length === 0 || rows[0].state === "moved") && !retried) {
      // Our idea of the namespace's shard is stale: it moved.
      this.placement.forgetPlacement(ns);
      return this.of(ns, true);
    }
    if (rows.length === 0) throw notFound(`namespace ${ns} has no state on its shard`);
    return { cursor: BigInt(rows[0].cursor_position), floor: BigInt(rows[0].journal_floor), usedBytes: BigInt(rows[0].used_bytes) };
  }
}
