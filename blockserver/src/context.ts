import { createLogger, type Logger } from "@satchel/proto";
import { BlockStore } from "./block-store.js";
import type { BlockserverConfig } from "./config.js";
import { BlockIndex } from "./index/block-index.js";
import { BlockserverMetrics } from "./metrics.js";

/** Every long-lived client of the blockserver, built once; close() releases them. */
export interface BlockserverContext {
  config: BlockserverConfig;
  logger: Logger;
  metrics: BlockserverMetrics;
  index: BlockIndex;
  store: BlockStore;
  close(): Promise<void>;
}

export async function createContext(config: BlockserverConfig): Promise<BlockserverContext> {
  const logger = createLogger("blockserver", config.logLevel);
  const metrics = new BlockserverMetrics();
  const index = await BlockIndex.open(config.directoryUrl);
  const store = new BlockStore(config, index, metrics);
  return { config, logger, metrics, index, store, close: () => index.close() };
}
