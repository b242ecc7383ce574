import { ShardMissingError, ShardUnreadableError } from "../nodes/storage-node.js";
import type { NodeSet } from "../nodes/node-set.js";
import { isStored, type BlockRecord, type ShardPlacement } from "../block-index/block-index.js";
import type { BlockserverMetrics } from "../metrics.js";
import type { ShardFinding } from "../quorum.js";
import { decodeShard, encodeShard, payloadChecksumOf, ShardCorruptError } from "../shard-format/shard-format.js";

/** The object key of a block's shard on its node. */
export const shardKey = (hash: Uint8Array, index: number): string => {
  const hex = Buffer.from(hash).toString("hex");
  return `blocks/${hex.slice(0, 2)}/${hex}.${index}`;
};

/** What seeking one shard found: its verified payload, or what is wrong with it (see quorum.ts). */
export interface ShardSurvey extends ShardFinding {
  index: number;
  payload?: Buffer;
  /** Why a gone shard is gone. */
  problem?: "absent" | "corrupt";
  /** Bytes read from the node. */
  bytes?: number;
  /** A node was asked. */
  tried: boolean;
  /** Found on a node other than the one the index records. */
  relocated?: boolean;
  /** What happened, for logs and error messages. */
  detail: string;
}

/** A block as its shards describe it. */
export type ShardedBlock = Pick<BlockRecord, "hash" | "size" | "dataShards" | "parityShards">;

/** One shard write: its placement (stored, or "missing" with the error). */
export interface ShardWrite {
  placement: ShardPlacement;
  error?: Error;
}

/**
 * Reads, verifies, seeks and writes single shards on the storage nodes: the one layer the block
 * store (reads and writes of whole blocks), the repairer and the scrubber share. The index is only
 * a hint here; what a node answers is the truth.
 */
export class ShardIO {
  constructor(
    readonly nodes: NodeSet,
    private readonly metrics: BlockserverMetrics,
    private readonly hedgeMs: number,
  ) {}

  /**
   * Seeks a block's shards, trusting the index only as a hint. With `enough`, it stops once that
   * many good shards are in hand; otherwise it tries every placement, whatever its recorded state.
   * While fewer than k are good, it looks again: nodes thought down are tried, and a shard absent
   * where the index puts it is looked for by key on every other node (a repair may have rebuilt it
   * there without recording it). A shard is `gone` only when every node answered without it.
   */
  async survey(record: BlockRecord, opts: { hedged?: boolean; enough?: number } = {}): Promise<ShardSurvey[]> {
    const k = record.dataShards;
    const out: ShardSurvey[] = record.shards.map((p) => ({ index: p.index, node: p.node, status: "unreachable", tried: false, detail: "not tried" }));
    const look = async (p: ShardPlacement, timeoutMs?: number, evenIfDown = false) => {
      const found = await this.inspectShard(record, p, timeoutMs, evenIfDown);
      out[p.index] = { ...found, tried: found.tried || out[p.index].tried };
    };
    const goodCount = () => out.filter((s) => s.status === "ok").length;
    // 1. Shards recorded as stored on nodes that answer, data shards first.
    const first = record.shards.filter((p) => isStored(p.state) && this.nodes.get(p.node)?.healthy);
    await Promise.all((opts.enough ? first.slice(0, opts.enough) : first).map((p) => look(p, opts.hedged ? this.hedgeMs : undefined)));
    if (opts.enough && goodCount() >= opts.enough) return out;
    // 2. Every other placement, whatever the index says about it.
    await Promise.all(record.shards.filter((p) => !out[p.index].tried).map((p) => look(p)));
    if (goodCount() >= k) return out;
    // 3. Still short: nodes believed down are asked anyway (within the hedge), slow ones get the full
    // timeout, and shards absent where recorded are looked for on every other node.
    await Promise.all(out.map(async (s, i) => {
      if (s.status === "ok") return;
      const p = record.shards[i];
      if (s.status === "unreachable") await look(p, s.tried ? undefined : this.hedgeMs, true);
      if (out[i].status !== "gone") return;
      out[i] = await this.searchElsewhere(record, p, out[i]);
    }));
    return out;
  }

  /** Looks for a shard absent (or corrupt) on its recorded node on every other node, by key. */
  private async searchElsewhere(record: BlockRecord, p: ShardPlacement, atHome: ShardSurvey): Promise<ShardSurvey> {
    const others = this.nodes.names.filter((n) => n !== p.node);
    const found = await Promise.all(others.map((node) => this.inspectShard(record, { ...p, node }, undefined, true)));
    const hit = found.find((f) => f.status === "ok");
    if (hit) return { ...hit, relocated: true };
    const silent = found.filter((f) => f.status === "unreachable").map((f) => f.node);
    if (silent.length === 0) return atHome;
    // Not proven gone: it may sit on a node that did not answer.
    return { ...atHome, status: "unreachable", detail: `${atHome.detail}; not found elsewhere, but ${silent.join(", ")} did not answer` };
  }

  /**
   * Reads and verifies one shard on one node, saying what is wrong with it when it cannot be used.
   * A node believed down is not asked unless `evenIfDown` (its requests would only time out).
   */
  async inspectShard(record: BlockRecord, placement: ShardPlacement, timeoutMs?: number, evenIfDown = false): Promise<ShardSurvey> {
    const base = { index: placement.index, node: placement.node };
    const node = this.nodes.get(placement.node);
    if (!node) return { ...base, status: "unreachable", tried: false, detail: `node ${placement.node} is not configured` };
    if (!node.healthy && !evenIfDown) return { ...base, status: "unreachable", tried: false, detail: `${node.name} is down` };
    let object: Buffer;
    try {
      object = await node.get(shardKey(record.hash, placement.index), timeoutMs);
    } catch (err) {
      this.metrics.shardFailures.inc({ node: placement.node, operation: "read" });
      if (err instanceof ShardMissingError) return { ...base, status: "gone", problem: "absent", tried: true, detail: `absent on ${node.name}` };
      // The node could not read the object. If it serves its identity object, its drive is fine and
      // this object failed MinIO's own checksum: corrupt. Otherwise the drive is offline: unreachable.
      if (err instanceof ShardUnreadableError && (await node.answers())) {
        return { ...base, status: "gone", problem: "corrupt", tried: true, detail: `corrupt on ${node.name}: ${err.message}` };
      }
      return { ...base, status: "unreachable", tried: true, detail: (err as Error).message };
    }
    this.metrics.shardBytes.inc({ direction: "read" }, object.length);
    try {
      const { header, payload } = decodeShard(object);
      if (!header.blockHash.equals(record.hash) || header.index !== placement.index || header.payloadChecksum !== placement.checksum) {
        throw new ShardCorruptError("shard does not belong to this block");
      }
      return { ...base, status: "ok", payload, bytes: object.length, tried: true, detail: "ok" };
    } catch (err) {
      this.metrics.shardFailures.inc({ node: placement.node, operation: "read" });
      return { ...base, status: "gone", problem: "corrupt", bytes: object.length, tried: true, detail: `corrupt on ${node.name}: ${(err as Error).message}` };
    }
  }

  /** Removes one shard object from a node. */
  deleteShard(hash: Uint8Array, index: number, nodeName: string): Promise<void> {
    return this.nodes.get(nodeName)!.delete(shardKey(hash, index));
  }

  /** Writes one shard to a node; a failure is returned (with a "missing" placement), not thrown. */
  async writeShard(block: ShardedBlock, index: number, payload: Uint8Array, nodeName: string, state: ShardPlacement["state"] = "ok"): Promise<ShardWrite> {
    const [header, body] = encodeShard({ k: block.dataShards, m: block.parityShards, index, blockLength: block.size, blockHash: block.hash }, payload);
    const placement: ShardPlacement = { index, node: nodeName, checksum: payloadChecksumOf(header), state: "missing" };
    const node = this.nodes.get(nodeName);
    if (!node?.healthy) return { placement, error: new Error(`${nodeName} is down`) };
    try {
      await node.put(shardKey(block.hash, index), [header, body]);
    } catch (err) {
      this.metrics.shardFailures.inc({ node: nodeName, operation: "write" });
      return { placement, error: err as Error };
    }
    this.metrics.shardBytes.inc({ direction: "written" }, header.length + body.length);
    this.metrics.shardWrites.inc({ node: nodeName });
    return { placement: { ...placement, state } };
  }
}
