// Runs once per `vitest run`, before any test file (vitest.config.ts
// globalSetup). On PGlite, creating a database runs initdb inside WebAssembly
// and then every migration: many seconds per database, more than most test
// files take to run. So it is done once, by a child process started here
// (test/support/pglite-templates.ts), while the first files, which need no
// template, start; each test database starts from a copy of the result
// (test/support/backend.ts): the archive of a data directory just created,
// and of one just migrated, in a temporary directory removed at the end of
// the run. On PostgreSQL there is nothing to prepare. On both, the run gets a
// temporary directory of its own (runDir), where test/lifecycle/support.ts
// builds the one copy of the repository that the files running the built
// server share.
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { TestProject } from "vitest/node";
// ProvidedContext's pgliteTemplates, what this provides, is declared in backend.ts.

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "orchestrator-state-run-"));
  project.provide("runDir", dir);
  if (process.env.TEST_DATABASE_URL) {
    project.provide("pgliteTemplates", undefined);
    return () => fs.rm(dir, { recursive: true, force: true });
  }
  const maker = spawn(process.execPath, ["--import", "tsx", path.join(import.meta.dirname, "pglite-templates.ts"), dir], {
    cwd: path.resolve(import.meta.dirname, "../.."),
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = new Promise((resolve) => maker.once("exit", resolve));
  project.provide("pgliteTemplates", { dir, empty: path.join(dir, "empty.tar"), migrated: path.join(dir, "migrated.tar") });
  return async () => {
    maker.kill("SIGKILL");
    await exited;
    await fs.rm(dir, { recursive: true, force: true });
  };
}
