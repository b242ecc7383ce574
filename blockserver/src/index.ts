export * from "./config.js";
export * from "./context.js";
export * from "./server.js";
export * from "./block-store.js";
export * from "./shard-io/shard-io.js";
