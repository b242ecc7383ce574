import type { VolumeSettings } from "./volumes/volume-store.js";
import { defaultWriteQuorum, validateWriteQuorum } from "./quorum.js";
import { envInt, envJson, envString, secureUrl, serviceBasics, type Env, type ServiceBasics } from "@satchel/proto";

export interface StorageNodeConfig {
  name: string;
  endpoint: string;
  accessKey: string;
  secretKey: string;
  bucket: string;
}

export interface BlockserverConfig extends ServiceBasics {
  /**
   * mysql://user:password@host:port/satchel_block_directory: the blockserver's own directory (its
   * index shards, storage nodes' states, the sources of reference changes).
   */
  blockIndexUrl: string;
  storageNodes: StorageNodeConfig[];
  dataShards: number;
  parityShards: number;
  /** Time one storage node may take on one shard before the request fails over. */
  nodeTimeoutMs: number;
  /** Shards that must be stored before a write is acknowledged (see quorum.ts). */
  writeQuorum: number;
  /** Hedged reads: a data shard not read within this time is treated as missing and parity is fetched. */
  hedgeMs: number;
  /** How often down storage nodes are probed. */
  probeIntervalMs: number;
  /** How often the index is swept for blocks with missing shards. */
  repairSweepMs: number;
  scrub: { rateBytesPerSecond: number; idleMs: number; maxYieldMs: number };
  gc: {
    /** An unreferenced block is kept this long after its count reached zero (or it was written). */
    graceSeconds: number;
    /** How often the collector runs; 0 disables the background runs (RunGarbageCollection still works). */
    intervalMs: number;
    /** How long ReserveBlocks protects blocks for a commit that is about to reference them. */
    reserveLeaseSeconds: number;
    /** A shard object with no index entry is removed only when older than this (an in-flight write is younger). */
    orphanMinAgeSeconds: number;
    /**
     * Collection pauses while a source of reference changes (a metadata shard's relay) has not
     * reported, or holds changes older than this: what waits in its outbox may reference blocks at zero.
     */
    relayBoundSeconds: number;
    /** Clock skew allowed between the blockservers (which stamp the relays' claims) and the index databases. */
    clockSkewMs: number;
  };
  /**
   * Blocks smaller than this are packed into open volumes (volumes/volume-store.ts) instead of
   * being erasure-coded on their own; 0 packs nothing.
   */
  packBelowBytes: number;
  volumes: Omit<VolumeSettings, "readTimeoutMs"> & {
    /** Every copy of every volume segment is read and checked this often (0: never). */
    scrubIntervalMs: number;
  };
}

export function loadConfig(env: Env = process.env): BlockserverConfig {
  const config: BlockserverConfig = {
    ...serviceBasics(env, "blockserver", 7301),
    blockIndexUrl: envString(env, "SATCHEL_BLOCK_INDEX_URL", ""),
    storageNodes: envJson<StorageNodeConfig[]>(env, "SATCHEL_STORAGE_NODES", []),
    dataShards: envInt(env, "SATCHEL_EC_DATA_SHARDS", 4),
    parityShards: envInt(env, "SATCHEL_EC_PARITY_SHARDS", 2),
    nodeTimeoutMs: envInt(env, "SATCHEL_NODE_TIMEOUT_MS", 10_000),
    writeQuorum: 0,
    hedgeMs: envInt(env, "SATCHEL_HEDGE_MS", 1000),
    probeIntervalMs: envInt(env, "SATCHEL_NODE_PROBE_MS", 1000),
    repairSweepMs: envInt(env, "SATCHEL_REPAIR_SWEEP_MS", 10_000),
    scrub: {
      rateBytesPerSecond: envInt(env, "SATCHEL_SCRUB_BYTES_PER_SECOND", 32 * 1024 * 1024),
      idleMs: envInt(env, "SATCHEL_SCRUB_IDLE_MS", 60_000),
      maxYieldMs: envInt(env, "SATCHEL_SCRUB_MAX_YIELD_MS", 500),
    },
    gc: {
      graceSeconds: envInt(env, "SATCHEL_GC_GRACE_SECONDS", 3600),
      intervalMs: envInt(env, "SATCHEL_GC_INTERVAL_MS", 300_000),
      reserveLeaseSeconds: envInt(env, "SATCHEL_RESERVE_LEASE_SECONDS", 3600),
      orphanMinAgeSeconds: envInt(env, "SATCHEL_ORPHAN_MIN_AGE_SECONDS", 3600),
      relayBoundSeconds: envInt(env, "SATCHEL_GC_RELAY_BOUND_SECONDS", 120),
      clockSkewMs: envInt(env, "SATCHEL_GC_CLOCK_SKEW_MS", 1000),
    },
    packBelowBytes: envInt(env, "SATCHEL_PACK_BELOW_BYTES", 0),
    volumes: {
      replicas: envInt(env, "SATCHEL_VOLUME_REPLICAS", 3),
      windowMs: envInt(env, "SATCHEL_VOLUME_WINDOW_MS", 2),
      segmentBytes: envInt(env, "SATCHEL_VOLUME_SEGMENT_BYTES", 4 * 1024 * 1024),
      targetBytes: envInt(env, "SATCHEL_VOLUME_TARGET_BYTES", 128 * 1024 * 1024),
      segmentsInFlight: envInt(env, "SATCHEL_VOLUME_SEGMENTS_IN_FLIGHT", 4),
      scrubIntervalMs: envInt(env, "SATCHEL_VOLUME_SCRUB_MS", 3_600_000),
    },
  };
  config.writeQuorum = validateWriteQuorum(
    envInt(env, "SATCHEL_WRITE_QUORUM", defaultWriteQuorum(config.dataShards, config.parityShards)),
    config.dataShards, config.parityShards,
  );
  if (config.packBelowBytes > 0 && (config.volumes.replicas < 1 || config.volumes.replicas > config.storageNodes.length)) {
    throw new Error(`SATCHEL_VOLUME_REPLICAS (${config.volumes.replicas}) must be between 1 and the number of storage nodes (${config.storageNodes.length})`);
  }
  if (config.packBelowBytes > config.volumes.segmentBytes) {
    throw new Error(`SATCHEL_PACK_BELOW_BYTES (${config.packBelowBytes}) must not exceed SATCHEL_VOLUME_SEGMENT_BYTES (${config.volumes.segmentBytes}): a packed block fits one segment`);
  }
  if (!config.blockIndexUrl) throw new Error("SATCHEL_BLOCK_INDEX_URL is required (the block index's directory database)");
  if (config.grantKeys.length === 0) throw new Error("SATCHEL_GRANT_KEYS is required (block grants: [{\"kid\", \"secret\"}], shared with the metaserver)");
  const width = config.dataShards + config.parityShards;
  if (config.storageNodes.length < width) {
    throw new Error(
      `erasure coding ${config.dataShards}+${config.parityShards} needs at least ${width} storage nodes, ` +
        `SATCHEL_STORAGE_NODES has ${config.storageNodes.length}`,
    );
  }
  for (const node of config.storageNodes) secureUrl(`SATCHEL_STORAGE_NODES (${node.name})`, node.endpoint, config.tls);
  return config;
}
