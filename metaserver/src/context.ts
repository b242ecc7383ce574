import { createClient, type Client } from "@connectrpc/connect";
import { createLogger, createSatchelTransport, ServiceMetrics, type Logger } from "@satchel/proto";
import { BlockService } from "@satchel/proto/gen/satchel/block/v1/block_pb.js";
import type { MetaserverConfig } from "./config.js";
import { CommitPublisher } from "./journal/publisher.js";
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
  publisher: CommitPublisher;
  close(): Promise<void>;
}

export async function createContext(config: MetaserverConfig): Promise<MetaserverContext> {
  const logger = createLogger("metaserver", config.logLevel);
  const shards = await ShardSet.open(config.directoryUrl, config.shardPoolSize);
  const namespaces = new NamespaceStore(shards);
  const publisher = new CommitPublisher(config.redisUrl, logger);
  const blocks = createClient(BlockService, createSatchelTransport({ baseUrl: config.blockserverUrl, token: config.devToken }));
  return {
    config, logger, metrics: new ServiceMetrics("metaserver"), shards, namespaces,
    files: new FileStore(namespaces), blocks, publisher,
    close: async () => {
      await publisher.close();
      await shards.close();
    },
  };
}
