export * from "./config.js";
export * from "./cluster/cluster.js";
export * from "./cluster/minio.js";
export * from "./cluster/process.js";
export * from "./cluster/migrate.js";
export * from "./testing/helpers.js";
export * from "./testing/node-control.js";
export * from "./testing/accounts.js";
