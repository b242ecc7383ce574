import { defineConfig } from "vitest/config";

// Two projects: unit specs run on their own; integration specs (*.it.spec.ts) share one real
// local cluster (MariaDB shards, Redis, MinIO nodes and the three services) that the global
// setup starts under its own state directory and ports, and stops at the end.
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
          exclude: ["**/node_modules/**", "**/dist/**"],
          globalSetup: ["ops/src/testing/global-setup.ts"],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
