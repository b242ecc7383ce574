import { createClient, type Client } from "@connectrpc/connect";
import { createLogger, createSatchelTransport, ServiceMetrics, type Logger } from "@satchel/proto";
import { BlockAdminService, BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { MetaserverConfig } from "./config.js";
import { CommitPublisher } from "./journal/publisher.js";
import { ReferenceRelay } from "./journal/reference-relay.js";
import { FileStore } from "./store/files.js";
import { NamespaceStore } from "./store/namespaces.js";
import { ShardSet } from "./store/shards.js";

/** Every long-lived client of the metaserver, built once; close() releases them. */
export interface MetaserverContext {
  config: MetaserverConfig;
  logger: Logger;
  metrics: ServiceMetrics;
  shards: ShardSet;
  namespaces: NamespaceStore;
  files: FileStore;
  blocks: Client<typeof BlockService>;
  blockAdmin: Client<typeof BlockAdminService>;
  publisher: CommitPublisher;
  relay: ReferenceRelay;
  close(): Promise<void>;
}

export async function createContext(config: MetaserverConfig): Promise<MetaserverContext> {
  const logger = createLogger("metaserver", config.logLevel);
  const shards = await ShardSet.open(config.directoryUrl, config.shardPoolSize);
  const namespaces = new NamespaceStore(shards);
  const publisher = new CommitPublisher(config.redisUrl, logger);
  const blockTransport = createSatchelTransport({ baseUrl: config.blockserverUrl, token: config.devToken });
  const blocks = createClient(BlockService, blockTransport);
  const blockAdmin = createClient(BlockAdminService, blockTransport);
  const metrics = new ServiceMetrics("metaserver");
  const relay = new ReferenceRelay(shards, blocks, logger, metrics.registry);
  relay.start(1000);
  return {
    config, logger, metrics, shards, namespaces,
    files: new FileStore(namespaces), blocks, blockAdmin, publisher, relay,
    close: async () => {
      relay.stop();
      await publisher.close();
      await shards.close();
    },
  };
}
