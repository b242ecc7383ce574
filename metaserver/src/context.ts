import { createClient, type Client } from "@connectrpc/connect";
import { AccessTokens, BlockGrants, createLogger, createSatchelTransport, ServiceMetrics, linkKeysOf, userRateLimits, type Logger, type RateClass, type SharedRateLimiter, type SigningKey } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import { PasswordQueue } from "./auth/password-queue.js";
import { RecentReservations } from "./blocks/reservations.js";
import type { MetaserverConfig } from "./config.js";
import { createMetaMetrics, type MetaMetrics } from "./metrics.js";
import { CursorWatcher } from "./journal/cursor-watch.js";
import { CommitPublisher } from "./journal/publisher.js";
import { ReferenceReconciler } from "./journal/reference-reconciler.js";
import { ReferenceRelay } from "./journal/reference-relay.js";
import { RetentionJob } from "./journal/retention.js";
import { FileStore } from "./store/files.js";
import { JournalStore } from "./store/journal-store.js";
import { NamespaceTxns } from "./store/namespace-txn.js";
import { NamespaceStore } from "./store/namespaces.js";
import { NamespacePlacement } from "./store/placement.js";
import { ReferenceOutbox } from "./store/reference-outbox.js";
import { Quotas } from "./store/quotas.js";
import { CursorStates } from "./store/cursor-state.js";
import { probeShards } from "./store/shard-probe.js";
import { openShardSet, type ShardSet } from "./store/shards.js";
import { VersionReads } from "./store/version-reads.js";
import { Verifier } from "./verify/verifier.js";

/** Blocks whose recent reservation a metaserver remembers (about 100 bytes each). */
const RECENT_RESERVATIONS_KEPT = 100_000;

/** Every long-lived client of the metaserver, built once; close() releases them. */
export type { MetaMetrics };

export interface MetaserverContext {
  config: MetaserverConfig;
  logger: Logger;
  metrics: ServiceMetrics;
  metaMetrics: MetaMetrics;
  shards: ShardSet;
  namespaces: NamespaceStore;
  placement: NamespacePlacement;
  files: FileStore;
  journal: JournalStore;
  txns: NamespaceTxns;
  quotas: Quotas;
  accessTokens: AccessTokens;
  /** Issues the block grants of every block list shown to a user, and checks those a commit brings. */
  grants: BlockGrants;
  /** The share links' HMAC keys (from the token keys' private halves: see linkKeysOf). */
  linkKeys: SigningKey[];
  /** Password hashing, bounded (see password-queue.ts). */
  passwords: PasswordQueue;
  /** Rate limits, shared through Redis: users' metadata reads and commits, sign-in per address and account, the link gateway. */
  limits: SharedRateLimiter<RateClass>;
  blocks: Client<typeof BlockService>;
  /** Blocks reserved moments ago: a commit of one of them skips ReserveBlocks. */
  recentReservations: RecentReservations;
  blockAdmin: Client<typeof BlockAdminService>;
  publisher: CommitPublisher;
  cursors: CursorWatcher;
  relay: ReferenceRelay;
  outbox: ReferenceOutbox;
  reconciler: ReferenceReconciler;
  retention: RetentionJob;
  verifier: Verifier;
  close(): Promise<void>;
}

export async function createContext(config: MetaserverConfig): Promise<MetaserverContext> {
  const logger = createLogger("metaserver", config.logLevel);
  const shards = await openShardSet(config.directoryUrl, config.shardPoolSize, config.tls);
  const placement = new NamespacePlacement(shards);
  const namespaces = new NamespaceStore(shards, placement);
  const publisher = new CommitPublisher(config.redisUrl, logger, config.cursorCacheSeconds, config.tls);
  const cursorStates = new CursorStates(placement);
  const quotas = new Quotas(namespaces, cursorStates, config.defaultQuotaBytes);
  const metrics = new ServiceMetrics("metaserver");
  const metaMetrics = createMetaMetrics(metrics.registry, { shards, unpublished: () => publisher.unpublishedCount });
  const txns = new NamespaceTxns(placement, (ns, cursor) => publisher.published(ns, cursor), {
    members: config.groupCommitMembers,
    slots: config.groupCommitSlots,
    observe: (n) => metaMetrics.groupCommit.members.observe(n),
    alone: (reason) => metaMetrics.groupCommit.alone.inc({ reason }),
  });
  const files = new FileStore(placement, txns, quotas);
  const journal = new JournalStore(placement, txns, cursorStates);
  const cursors = new CursorWatcher(config.redisUrl, publisher, journal, logger, (ns) => placement.forgetPlacement(ns), config.tls);
  const blockTransport = createSatchelTransport({ baseUrl: config.blockserverUrl, token: config.serviceToken, ca: config.tls?.ca });
  const blocks = createClient(BlockService, blockTransport);
  const blockAdmin = createClient(BlockAdminService, blockTransport);
  const stopProbe = probeShards(shards, metaMetrics, 5000);
  const outbox = new ReferenceOutbox(shards);
  // A relay back from an outage asks for a reconciliation: counts are checked once it caught up.
  const relay = new ReferenceRelay(outbox, blocks, logger, metrics.registry, (outageMs) => {
    if (config.reconcileAfterRelayOutage) reconciler.requestSoon(`the reference relay recovered after ${outageMs} ms`);
  });
  const reconciler = new ReferenceReconciler(outbox, relay, blockAdmin, logger, metaMetrics.reconcile);
  relay.start(1000);
  reconciler.start(config.reconcileIntervalSeconds * 1000);
  const retention = new RetentionJob(placement, journal, logger, {
    retentionDays: config.retentionDays, versionsKept: config.versionsKept, journalDays: config.journalRetentionDays,
  });
  if (config.pruneIntervalSeconds > 0) retention.start(config.pruneIntervalSeconds * 1000);
  const verifier = new Verifier(new VersionReads(shards), blockAdmin, logger, metaMetrics.verify);
  if (config.verifyIntervalSeconds > 0) verifier.start(config.verifyIntervalSeconds * 1000);
  const limits = userRateLimits(config, metrics, logger);
  return {
    config, logger, metrics, metaMetrics, shards, namespaces, placement, files, journal, txns, quotas, accessTokens: new AccessTokens(config.tokenKeys),
    grants: new BlockGrants(config.grantKeys, config.blockGrantSeconds),
    limits,
    passwords: new PasswordQueue(config.passwordHashesAtOnce, config.passwordQueue),
    linkKeys: linkKeysOf(config.tokenKeys),
    blocks, recentReservations: new RecentReservations(config.reservationReuseSeconds * 1000, RECENT_RESERVATIONS_KEPT), blockAdmin, publisher, cursors, relay, outbox, reconciler, retention, verifier,
    close: async () => {
      stopProbe();
      retention.stop();
      verifier.stop();
      relay.stop();
      reconciler.stop();
      cursors.close();
      await publisher.close();
      await limits.close();
      await shards.close();
    },
  };
}
