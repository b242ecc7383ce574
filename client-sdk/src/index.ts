export * from "./client.js";
export * from "./chunker/fastcdc.js";
export * from "./auth.js";
export * from "./sync/agent.js";
