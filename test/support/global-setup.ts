// Runs once per `vitest run`, before any test file (vitest.config.ts
// globalSetup). On PGlite, creating a database runs initdb inside WebAssembly
// and then every migration: many seconds per database, more than most test
// files take to run. So it is done once here, and each test database starts
// from a copy of the result (test/support/backend.ts): the archive of a data
// directory just created, and of one just migrated, in a temporary directory
// removed at the end of the run. On PostgreSQL there is nothing to prepare.
// On both, the run gets a temporary directory of its own (runDir), where
// test/lifecycle/support.ts builds the one copy of the repository that the
// files running the built server share.
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import type { TestProject } from "vitest/node";
import { createDatabase, migrate } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";
// ProvidedContext's pgliteTemplates, what this provides, is declared in backend.ts.

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "orchestrator-state-run-"));
  project.provide("runDir", dir);
  const removeDir = () => fs.rm(dir, { recursive: true, force: true });
  if (process.env.TEST_DATABASE_URL) {
    project.provide("pgliteTemplates", undefined);
    return removeDir;
  }
  const knex = createDatabase({ dataDir: "memory://", logger: silentLogger });
  try {
    // PGlite has one connection: knex's, released before migrate() takes it.
    const dump = async (name: string) => {
      const pglite = (await knex.client.acquireConnection()) as PGlite;
      try {
        const file = path.join(dir, `${name}.tar`);
        await fs.writeFile(file, new Uint8Array(await (await pglite.dumpDataDir("none")).arrayBuffer()));
        return file;
      } finally {
        await knex.client.releaseConnection(pglite);
      }
    };
    const empty = await dump("empty");
    await migrate(knex);
    const migrated = await dump("migrated");
    project.provide("pgliteTemplates", { empty, migrated });
  } finally {
    await knex.destroy();
  }
  return removeDir;
}
