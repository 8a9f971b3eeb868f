// The order in which npm test starts its files (vitest.config.ts
// sequence.sequencer). Two workers take the next file as they free up, so the
// run ends when the last file started ends: a long file started late runs
// alone at the end while the other worker idles. vitest's own order starts
// the longest files first only when it has the timings of an earlier run
// (node_modules/.vite, absent in CI); without them it starts the largest
// files first, and the longest files here are small ones that wait on child
// processes and timers: each was started among the last ones, the README's
// walk-through of replicas (it sleeps past a lease) last of all.
import * as path from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The files that take longest, about longest first (measured with npm test on
 * both backends; a file missing from a run is left out). The build that the
 * files starting the server share (test/support/built-server.ts) is made by
 * npm-start.test.ts's npm start (it tests that npm start builds a missing
 * dist/), first, beside the README's walk-through, which mostly sleeps; the
 * files that use the build come after, embedded-database.pglite.test.ts, the
 * longest on PGlite, as soon as a worker is free. The files that wait for
 * the build and then time a process (fail-fast.test.ts and
 * fail-fast.postgres.test.ts: "within 5 s") come after it is made, not
 * beside it. hostile-tenant.test.ts times another tenant's calls (p99 under
 * 100 ms when the machine is not loaded) while its attack runs: it comes
 * last, beside the short files that follow, not beside a file starting
 * server processes (beside claims.postgres.test.ts's, the p99 was 113 and
 * 124 ms in two runs on a quiet machine).
 */
export const LONGEST_FIRST = [
  "test/lifecycle/npm-start.test.ts",
  "test/readme-replicas.test.ts",
  "test/lifecycle/embedded-database.pglite.test.ts",
  "test/readme-examples.test.ts",
  "test/failures/claims.postgres.test.ts",
  "test/lifecycle/fail-fast.postgres.test.ts",
  "test/lifecycle/fail-fast.test.ts",
  "test/lifecycle/npm-ci-omit-dev.test.ts",
  "test/workflow-state/stream.test.ts",
  "test/main-process.test.ts",
  "test/failures/load.test.ts",
  "test/property/typed-requests.test.ts",
  "test/failures/crash.test.ts",
  "test/failures/partition.postgres.test.ts",
  "test/property/wire-bytes.test.ts",
  "test/statistics/request-ids.test.ts",
  "test/circuit-breaker/request-ids.test.ts",
  "test/failures/database-process.postgres.test.ts",
  "test/limits/request-size.test.ts",
  "test/routing-audit/retries.test.ts",
  "test/statistics/record-outcome.test.ts",
  "test/workflow-state/leases.test.ts",
  "test/failures/hostile-tenant.test.ts",
];

/** LONGEST_FIRST's files in its order, then the others in vitest's own order. */
export class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (spec: TestSpecification) => {
      const index = LONGEST_FIRST.indexOf(path.relative(spec.project.config.root, spec.moduleId).split(path.sep).join("/"));
      return index === -1 ? LONGEST_FIRST.length : index;
    };
    const others = await super.sort(files);
    return others.map((spec, position) => ({ spec, position })).sort((a, b) => rank(a.spec) - rank(b.spec) || a.position - b.position).map(({ spec }) => spec);
  }
}
