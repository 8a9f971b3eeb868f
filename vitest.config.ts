import { fileURLToPath } from "node:url";
import { configDefaults, defineConfig } from "vitest/config";

// Tests for one backend only live in *.postgres.test.ts and *.pglite.test.ts
// files. A run on one backend (TEST_DATABASE_URL set: PostgreSQL, else PGlite;
// see test/support/backend.ts) does not collect the other backend's files: a
// test that does not apply to a backend is absent from that run rather than
// reported as skipped, so any skipped test is one to look at.
const otherBackend = process.env.TEST_DATABASE_URL ? "pglite" : "postgres";
// Tests that drive Chromium (test/browser/) need a Debian package and run
// under npm run test:browser (vitest.browser.config.ts), not npm test.

export default defineConfig({
  // The examples import the package's client entry by name, as users do; here
  // it is its source (tsconfig.json maps it the same way for the type check).
  resolve: { alias: { "orchestrator-state/client": fileURLToPath(new URL("src/client/index.ts", import.meta.url)) } },
  test: {
    include: ["test/**/*.test.ts"],
    // test/examples/ runs other languages' examples (Debian packages needed):
    // `npm run test:examples`, with vitest.examples.config.ts.
    exclude: [...configDefaults.exclude, `test/**/*.${otherBackend}.test.ts`, "test/browser/**", "test/examples/**"],
    // Each file starts its own server and database; files run in parallel
    // processes, tests inside a file run in order. On PGlite each database
    // starts from a template made once per run (test/support/global-setup.ts).
    pool: "forks",
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
