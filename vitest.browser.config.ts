import { defineConfig } from "vitest/config";

// npm run test:browser: the dashboard in Debian's Chromium (apt-get install
// chromium), on PGlite or, with TEST_DATABASE_URL, PostgreSQL. Kept out of
// npm test so that a clone with only Node passes it (see vitest.config.ts).
export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    pool: "forks",
    // On PGlite each database starts from a template made once per run.
    globalSetup: ["test/support/global-setup.ts"],
    // One browser at a time on a small machine.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
