// PostgreSQL only (TEST_DATABASE_URL): several replicas started together on a
// brand-new database each run the migrations on start (src/main.ts). Knex's
// migration lock does not cover its first step, creating its own two tables:
// all but one replica failed with "relation already exists" (or a unique
// violation in pg_type), and two replicas that both found the lock table
// empty each inserted a lock row, after which Knex's lock (an UPDATE that must
// change exactly one row) could never be taken again.
import type { Knex } from "knex";
import { describe, expect, it } from "vitest";
import { createDatabase, migrate } from "../../src/db/database.js";
import { migrationSource } from "../../src/db/migrations/index.js";
import { silentLogger } from "../../src/logging/logger.js";
import { createScratchDatabase, postgresOptions } from "../support/backend.js";

const REPLICAS = 3;

describe("several replicas migrating a brand-new PostgreSQL database at once", () => {
  it("every replica's migrate() succeeds, each migration is applied once, and Knex's lock table holds one row", async () => {
    const all = (await migrationSource.getMigrations([])).map((m) => migrationSource.getMigrationName(m));
    // The race was lost in every one of five rounds when measured; two rounds, each on a new database.
    for (let round = 0; round < 2; round++) {
      const scratch = await createScratchDatabase("replicas_migrate");
      const replicas: Knex[] = Array.from({ length: REPLICAS }, () =>
        createDatabase({ ...postgresOptions(scratch.url!), poolMax: 2, logger: silentLogger }),
      );
      try {
        const results = await Promise.allSettled(replicas.map((knex) => migrate(knex)));
        expect(results.map((r) => (r.status === "rejected" ? String(r.reason) : "ok"))).toEqual(Array(REPLICAS).fill("ok"));
        const applied = results.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
        expect(applied.sort()).toEqual([...all].sort());
        const { rows: recorded } = await scratch.knex.raw<{ rows: { name: string }[] }>("SELECT name FROM knex_migrations ORDER BY name");
        expect(recorded.map((r) => r.name)).toEqual([...all].sort());
        const { rows: locks } = await scratch.knex.raw<{ rows: { is_locked: number }[] }>("SELECT is_locked FROM knex_migrations_lock");
        expect(locks).toEqual([{ is_locked: 0 }]);
        // And the next start, as any restart, finds nothing to do.
        expect(await migrate(replicas[0]!)).toEqual([]);
      } finally {
        await Promise.all(replicas.map((knex) => knex.destroy()));
        await scratch.drop();
      }
    }
  });
});
