import { fileURLToPath } from "node:url";
import { configDefaults, defineConfig } from "vitest/config";
import { LongestFirstSequencer } from "./test/support/sequencer.js";

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
    // Each file starts its own server and database; tests inside a file run
    // in order. On PGlite each database starts from a template made once per
    // run (test/support/global-setup.ts). Two files at a time (the default on
    // 2 cores is one, while most of a file's time is spent waiting on timers,
    // sockets and child processes), in worker processes kept between files
    // (isolate: false): a process per file loaded every module and compiled
    // PGlite's WebAssembly again. Measured on 10 handler files at load 12-14:
    // 140 s one at a time and isolated, 111 s two at a time, 50 s kept.
    pool: "forks",
    maxWorkers: 2,
    isolate: false,
    globalSetup: ["test/support/global-setup.ts"],
    // The longest files start first, in CI too (test/support/sequencer.ts).
    sequence: { sequencer: LongestFirstSequencer },
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
