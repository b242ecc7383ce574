import { defineConfig } from "vitest/config";

// Unit specs run on their own; integration specs (*.it.spec.ts) share one real local cluster
// (MariaDB shards, Redis, MinIO nodes and the three services) that the global setup starts under
// its own state directory and ports, and stops at the end. The two long seeded suites are projects
// of their own that ops/test.sh runs beside the integration specs, each on a cluster of its own:
// the nemesis starts, faults and stops one itself; the sync simulation gets one from the global
// setup, on the state directory and ports ops/test.sh gives it.
const NEMESIS = "ops/src/nemesis.it.spec.ts";
const SYNCSIM = "ops/src/syncsim.it.spec.ts";
const integration = {
  globalSetup: ["ops/src/testing/global-setup.ts"],
  testTimeout: 300_000,
  hookTimeout: 300_000,
  fileParallelism: false,
};

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
          exclude: ["**/node_modules/**", "**/dist/**", NEMESIS, SYNCSIM],
          ...integration,
        },
      },
      {
        test: {
          name: "syncsim",
          include: [SYNCSIM],
          ...integration,
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
