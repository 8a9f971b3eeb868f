import type { Knex } from "knex";
import { createDatabase, migrate } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";

/**
 * The database every storage test runs on: the embedded PGlite (in memory) by
 * default, or the PostgreSQL server named by TEST_DATABASE_URL (CI sets it, so
 * the same tests run on both). Tests isolate themselves with fresh random
 * tenants, so files can share one PostgreSQL database. Tests for one backend
 * only live in *.postgres.test.ts and *.pglite.test.ts files, which
 * vitest.config.ts collects only on that backend.
 */
export const backendName = process.env.TEST_DATABASE_URL ? "postgres" : "pglite";

/**
 * TEST_DATABASE_URL, for *.postgres.test.ts files: vitest.config.ts collects
 * them only when it is set, so this throws only if one is run some other way.
 */
export function postgresUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error("*.postgres.test.ts files need TEST_DATABASE_URL (a PostgreSQL database)");
  return url;
}

/** A migrated database for one test file; destroy it in afterAll. */
export async function createTestDatabase(): Promise<Knex> {
  const url = process.env.TEST_DATABASE_URL;
  const knex = url ? createDatabase({ databaseUrl: url, poolMax: 10, logger: silentLogger })
    : createDatabase({ dataDir: "memory://", logger: silentLogger });
  await migrate(knex);
  return knex;
}
