import { defineConfig } from "vitest/config";

// Three projects: unit specs run on their own; integration specs (*.it.spec.ts) share one real
// local cluster (MariaDB shards, Redis, MinIO nodes and the three services) that the global
// setup starts under its own state directory and ports, and stops at the end; the nemesis starts,
// faults and stops a cluster of its own, so ops/test.sh runs it beside the integration specs.
const NEMESIS = "ops/src/nemesis.it.spec.ts";

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["*/src/**/*.spec.ts"],
          exclude: ["**/node_modules/**", "**/dist/**", "**/*.it.spec.ts"],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["*/src/**/*.it.spec.ts"],
          exclude: ["**/node_modules/**", "**/dist/**", NEMESIS],
          globalSetup: ["ops/src/testing/global-setup.ts"],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "nemesis",
          include: [NEMESIS],
          testTimeout: 600_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
