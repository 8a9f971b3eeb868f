// The run's PGlite templates (test/support/global-setup.ts starts this file
// as a child process): the archive of a data directory just created
// (empty.tar) and of one just migrated (migrated.tar), written into the
// directory given as the argument, then a stamp (ready, or failed with the
// error). A child process, not the setup itself: the setup's process hands
// the workers their modules, and initdb inside WebAssembly would hold it for
// seconds; the run's first files start meanwhile, and what needs a template
// waits for the stamp (test/support/backend.ts, pgliteTemplate).
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { PGlite } from "@electric-sql/pglite";
import { createDatabase, migrate } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";

/** The stamps this writes into the directory, when the archives are complete or when making them failed. */
export const TEMPLATES_READY = "pglite-templates.ready";
export const TEMPLATES_FAILED = "pglite-templates.failed";

async function makeTemplates(dir: string): Promise<void> {
  const knex = createDatabase({ dataDir: "memory://", logger: silentLogger });
  try {
    // PGlite has one connection: knex's, released before migrate() takes it.
    const dump = async (name: string) => {
      const pglite = (await knex.client.acquireConnection()) as PGlite;
      try {
        await fs.writeFile(path.join(dir, `${name}.tar`), new Uint8Array(await (await pglite.dumpDataDir("none")).arrayBuffer()));
      } finally {
        await knex.client.releaseConnection(pglite);
      }
    };
    await dump("empty");
    await migrate(knex);
    await dump("migrated");
  } finally {
    await knex.destroy();
  }
}

// Run as a script (not when backend.ts imports the stamps' names).
const dir = process.argv[2];
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url) && dir !== undefined) {
  makeTemplates(dir).then(
    () => fs.writeFile(path.join(dir, TEMPLATES_READY), ""),
    (err: unknown) => fs.writeFile(path.join(dir, TEMPLATES_FAILED), String((err as Error)?.stack ?? err)),
  );
}
