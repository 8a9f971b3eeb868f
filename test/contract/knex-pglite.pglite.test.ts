// knex-pglite's answers that src/db/database.ts corrects, with a PGlite given
// as database.ts gives it. PGlite only (vitest.config.ts collects
// *.pglite.test.ts files only when TEST_DATABASE_URL is unset): the answers do
// not depend on the backend under test, and only a PGlite run has the run's
// new data directory to start from (test/support/global-setup.ts); in a
// PostgreSQL run the PGlite would run initdb, seconds of CPU. The pin of
// knex-pglite is checked on both: pinned-internals.test.ts.
import { openAsBlob } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import knexFactory from "knex";
import ClientPgLite from "knex-pglite";
import { describe, expect, it } from "vitest";
import { pgliteTemplate } from "../support/backend.js";

describe("knex-pglite's answers that src/db/database.ts corrects (public APIs, pinned behaviour)", () => {
  it("without the postProcessResponse of database.ts, a delete answers the raw response with command DEL, not the row count", async () => {
    // The instance given as database.ts gives it, started from the run's new data directory (test/support/global-setup.ts):
    // a PGlite of its own would run initdb, seconds on a loaded machine.
    const archive = await pgliteTemplate("empty");
    const pglite = new PGlite("memory://", { loadDataDir: archive === undefined ? undefined : await openAsBlob(archive) });
    const knex = knexFactory({ client: ClientPgLite as never, dialect: "postgres", connection: { pglite } as never });
    try {
      await knex.raw("CREATE TABLE t (id int)");
      await knex("t").insert([{ id: 1 }, { id: 2 }]);
      expect(await knex("t").where("id", 1).del()).toMatchObject({ command: "DEL", rowCount: 1 });
      expect(await knex("t").increment("id", 1)).toBe(1);
    } finally {
      await knex.destroy();
    }
  });
});
