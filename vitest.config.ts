import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Each file starts its own server and database; files run in parallel
    // processes, tests inside a file run in order.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
