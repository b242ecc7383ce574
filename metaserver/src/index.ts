export * from "./config.js";
export * from "./context.js";
export * from "./server.js";
export * from "./tree/paths.js";
