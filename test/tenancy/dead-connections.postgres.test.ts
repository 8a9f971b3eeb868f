import { randomUUID } from "node:crypto";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { queryWithin } from "../../src/connection/answer-timeout.js";
import { isUnanswered } from "../../src/errors/database-errors.js";
import { createDatabase } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";
import { TENANT_ROLE } from "../../src/tenancy/row-level-security.js";
import { TenantScope } from "../../src/tenancy/tenant-scope.js";
import { postgresOptions } from "../support/backend.js";
import { state } from "./support/tenant-unit.js";

// A statement pg gave up waiting for stays in flight on its connection, and
// everything sent after it would wait behind it: whoever ran it closes that
// connection, and the pool's check on acquire (src/connection/answer-timeout.ts, with
// pg's public APIs only) hands the next caller a fresh one at once.

describe("connections whose statement got no answer in time (PostgreSQL)", () => {
  it("the health probe's connection is closed, and the next unit, on either path, runs at once on a new connection", async () => {
    for (const pipelinedUnits of [true, false]) {
      const knex = createDatabase({ ...postgresOptions(), poolMax: 1, logger: silentLogger, pipelinedUnits });
      try {
        const first = (await knex.client.acquireConnection()) as pg.Client;
        await knex.client.releaseConnection(first);
        const unanswered = await queryWithin(knex, "SELECT pg_sleep(2)", 100).then(() => undefined, (err: unknown) => err);
        expect(isUnanswered(unanswered)).toBe(true);
        const tenant = randomUUID();
        const started = Date.now();
        expect(await new TenantScope(tenant, knex, Date.now() + 10_000).run((db) => state(db))).toMatchObject({ role: TENANT_ROLE, tenant });
        // Not behind the two seconds of the abandoned statement.
        expect(Date.now() - started).toBeLessThan(1_500);
        const next = (await knex.client.acquireConnection()) as pg.Client;
        await knex.client.releaseConnection(next);
        expect(next).not.toBe(first);
      } finally {
        await knex.destroy();
      }
    }
  });
});
