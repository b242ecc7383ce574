import { envInt, envString, secureUrl, serviceBasics, type Env, type ServiceBasics } from "@satchel/proto";

export interface MetaserverConfig extends ServiceBasics {
  directoryUrl: string;
  blockserverUrl: string;
  /** Connections per shard pool. */
  shardPoolSize: number;
  /** Group commit: commits (of different namespaces) one shard transaction may hold; 1 turns it off. */
  groupCommitMembers: number;
  /** Group commit: group transactions in flight per shard (commits arriving meanwhile form the next). */
  groupCommitSlots: number;
  /** A block this metaserver reserved moments ago is committed against without asking again for this long at most (0: always ask). */
  reservationReuseSeconds: number;
  listPageSize: number;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** Quota of users without one of their own; 0 means unlimited. */
  defaultQuotaBytes: bigint;
  /** Earlier versions and trashed entries are kept this long... */
  retentionDays: number;
  /** ...and at most this many versions per file (0: no count limit). */
  versionsKept: number;
  /** Journal entries older than this are compacted away (devices that far behind reset). */
  journalRetentionDays: number;
  /** How often the retention policy runs; 0 turns the background pruner off. */
  pruneIntervalSeconds: number;
  /**
   * How often the verifier reads every referenced block (throttled at the blockserver's scrub
   * rate); 0 turns the background verifier off. The first run comes one interval after start, so
   * a (re)started metaserver does not begin with a full read of the storage.
   */
  verifyIntervalSeconds: number;
  /**
   * How often block reference counts are reconciled against the file versions (mark and sweep);
   * 0 turns the schedule off. A relay that recovers from an outage also asks for a run.
   */
  reconcileIntervalSeconds: number;
  /**
   * Whether a relay back from an outage asks for a reconciliation (on by default). A fault test
   * turns it off to see drift that reconciliation would otherwise correct before it is checked.
   */
  reconcileAfterRelayOutage: boolean;
  /** How long a latest-cursor key lives in Redis (bounds its staleness when a publish is lost). */
  cursorCacheSeconds: number;
  /** Longest WaitForChange long poll. */
  waitMaxSeconds: number;
  /** HTTP port of the share-link gateway. */
  linksPort: number;
  /** Base URL share links are handed out with. */
  linksBaseUrl: string;
  /** How long a link works when its maker names no expiry... */
  shareLinkTtlSeconds: number;
  /** ...and the longest expiry a maker may name. */
  shareLinkMaxSeconds: number;
  /** Password hashes (sign-in, new accounts) run at once... */
  passwordHashesAtOnce: number;
  /** ...and sign-ins that may wait for one (beyond: RESOURCE_EXHAUSTED). */
  passwordQueue: number;
}

export function loadConfig(env: Env = process.env): MetaserverConfig {
  const basics = serviceBasics(env, "metaserver", 7300);
  const linksPort = envInt(env, "SATCHEL_METASERVER_LINKS_PORT", basics.port + 3);
  const config: MetaserverConfig = {
    ...basics,
    directoryUrl: envString(env, "SATCHEL_DIRECTORY_URL", ""),
    blockserverUrl: secureUrl("SATCHEL_BLOCKSERVER_URL", envString(env, "SATCHEL_BLOCKSERVER_URL", `${basics.tls ? "https" : "http"}://127.0.0.1:7301`), basics.tls),
    shardPoolSize: envInt(env, "SATCHEL_SHARD_POOL_SIZE", 16),
    groupCommitMembers: envInt(env, "SATCHEL_GROUP_COMMIT_MEMBERS", 64),
    groupCommitSlots: envInt(env, "SATCHEL_GROUP_COMMIT_SLOTS", 4),
    reservationReuseSeconds: envInt(env, "SATCHEL_RESERVATION_REUSE_SECONDS", 30),
    listPageSize: envInt(env, "SATCHEL_LIST_PAGE_SIZE", 1000),
    accessTokenTtlSeconds: envInt(env, "SATCHEL_ACCESS_TOKEN_TTL_SECONDS", 900),
    refreshTokenTtlSeconds: envInt(env, "SATCHEL_REFRESH_TOKEN_TTL_SECONDS", 30 * 86400),
    defaultQuotaBytes: BigInt(envString(env, "SATCHEL_DEFAULT_QUOTA_BYTES", "0")),
    retentionDays: envInt(env, "SATCHEL_RETENTION_DAYS", 30),
    versionsKept: envInt(env, "SATCHEL_VERSIONS_KEPT", 100),
    journalRetentionDays: envInt(env, "SATCHEL_JOURNAL_RETENTION_DAYS", 90),
    pruneIntervalSeconds: envInt(env, "SATCHEL_PRUNE_INTERVAL_SECONDS", 3600),
    verifyIntervalSeconds: envInt(env, "SATCHEL_VERIFY_INTERVAL_SECONDS", 86400),
    reconcileIntervalSeconds: envInt(env, "SATCHEL_RECONCILE_INTERVAL_SECONDS", 3600),
    reconcileAfterRelayOutage: envString(env, "SATCHEL_RECONCILE_AFTER_RELAY_OUTAGE", "on") !== "off",
    waitMaxSeconds: envInt(env, "SATCHEL_WAIT_MAX_SECONDS", 30),
    cursorCacheSeconds: envInt(env, "SATCHEL_CURSOR_CACHE_SECONDS", 10),
    linksPort,
    linksBaseUrl: envString(env, "SATCHEL_LINKS_BASE_URL", `${basics.tls ? "https" : "http"}://${basics.host}:${linksPort}`),
    shareLinkTtlSeconds: envInt(env, "SATCHEL_SHARE_LINK_TTL_SECONDS", 7 * 86400),
    shareLinkMaxSeconds: envInt(env, "SATCHEL_SHARE_LINK_MAX_SECONDS", 365 * 86400),
    passwordHashesAtOnce: envInt(env, "SATCHEL_PASSWORD_HASHES_AT_ONCE", 2),
    passwordQueue: envInt(env, "SATCHEL_PASSWORD_QUEUE", 32),
  };
  if (!config.directoryUrl) throw new Error("SATCHEL_DIRECTORY_URL is required (the shard map database)");
  if (!config.tokenKeys.some((k) => k.d)) throw new Error("the metaserver signs access tokens: SATCHEL_TOKEN_KEYS needs a key with its private half (\"d\")");
  if (config.grantKeys.length === 0) throw new Error("SATCHEL_GRANT_KEYS is required (block grants: [{\"kid\", \"secret\"}], shared with the blockserver)");
  // Node timers hold at most 2^31-1 ms; a longer one would fire at once, starting a verify at boot.
  if (config.verifyIntervalSeconds < 0 || config.verifyIntervalSeconds > 2_147_483) {
    throw new Error(`SATCHEL_VERIFY_INTERVAL_SECONDS must be between 0 (off) and 2147483 (about 24 days), got ${config.verifyIntervalSeconds}`);
  }
  if (config.reconcileIntervalSeconds < 0 || config.reconcileIntervalSeconds > 2_147_483) {
    throw new Error(`SATCHEL_RECONCILE_INTERVAL_SECONDS must be between 0 (off) and 2147483 (about 24 days), got ${config.reconcileIntervalSeconds}`);
  }
  if (config.groupCommitMembers < 1 || config.groupCommitSlots < 1 || config.groupCommitSlots >= config.shardPoolSize) {
    throw new Error(`SATCHEL_GROUP_COMMIT_MEMBERS (${config.groupCommitMembers}) must be at least 1 (1: off) and SATCHEL_GROUP_COMMIT_SLOTS (${config.groupCommitSlots}) between 1 and SATCHEL_SHARD_POOL_SIZE - 1 (${config.shardPoolSize - 1}): other writes need connections too`);
  }
  if (!(config.shareLinkTtlSeconds >= 1 && config.shareLinkTtlSeconds <= config.shareLinkMaxSeconds)) {
    throw new Error(`SATCHEL_SHARE_LINK_TTL_SECONDS (${config.shareLinkTtlSeconds}) must be between 1 and SATCHEL_SHARE_LINK_MAX_SECONDS (${config.shareLinkMaxSeconds})`);
  }
  return config;
}
