export * from "./client.js";
export * from "./chunker/fastcdc.js";
