export * from "./client.js";
export * from "./chunker/fastcdc.js";
export * from "./auth.js";
export * from "./sync/agent.js";
export { PROBLEM_RETRY, retryDelayMs, type ProblemDirection, type RetryPolicy, type SyncProblem } from "./sync/problems.js";
