import { defineConfig } from "vitest/config";

// `npm run test:examples`: the examples in other languages (examples/), run
// against real servers. They need Debian packages that a Node-only machine
// lacks (see examples/debian-packages.txt), so plain `npm test` leaves them
// out; .ci/run installs the packages and runs them.
export default defineConfig({
  test: {
    include: ["test/examples/**/*.test.ts"],
    pool: "forks",
    // One file at a time: each runs a server and several client processes.
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
