import { defineConfig } from "vitest/config";

// One config for unit, service and end-to-end tests. `npm test` starts the servers they need and
// passes their addresses as STEPLINE_TEST_* variables.
export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**", "**/.stepline/**"],
    testTimeout: 60_000,
    // Hooks start whole clusters (five services) in end-to-end tests.
    hookTimeout: 120_000,
    // One file at a time: the services under test and the servers share 2 cores.
    fileParallelism: false,
    // A flaky test is a bug to fix, not to hide.
    retry: 0,
  },
});
