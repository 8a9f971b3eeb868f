import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "../support/backend.js";
import { tenantKeyViolations } from "./support/tenant-keys.js";

// Ready for Citus (docs/scaling.md): every table's primary key and unique
// constraints lead with tenant_id, checked in the catalog (pg_index,
// pg_constraint) of the migrated schema, so that a migration breaking the rule
// fails here. The second test shows the check failing on tables and indexes
// that break it, made inside a transaction that is rolled back.

const OUR_TABLES = [
  "agent_statistics", "circuit_breaker_transitions", "circuit_breakers", "execution_leases", "retention_policies", "routing_decision_ids", "routing_decisions",
  "workflow_executions",
];

let knex: Knex;
beforeAll(async () => {
  knex = await createTestDatabase();
});
afterAll(async () => {
  await knex.destroy();
});

async function currentSchema(db: Knex): Promise<string> {
  const { rows } = await db.raw<{ rows: { schema: string }[] }>("SELECT current_schema() AS schema");
  return rows[0]!.schema;
}

/** Rolls back whatever `work` did, and returns its result. */
async function rolledBack<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  const trx = await knex.transaction();
  try {
    return await work(trx);
  } finally {
    await trx.rollback();
  }
}

describe("the schema is ready for sharding by tenant_id", () => {
  it("every table of ours has tenant_id, a primary key, and every unique key leads with tenant_id", async () => {
    const { tables, violations } = await tenantKeyViolations(knex, await currentSchema(knex));
    expect(tables).toEqual(expect.arrayContaining(OUR_TABLES));
    expect(violations).toEqual([]);
  });

  it("reports a unique index, a unique constraint or an expression key without tenant_id first, and a table without tenant_id", async () => {
    const found = await rolledBack(async (trx) => {
      // In the real schema: a unique index on a table of ours, not led by tenant_id.
      await trx.raw("CREATE UNIQUE INDEX workflow_executions_bad_idx ON workflow_executions (execution_id, tenant_id)");
      const real = await tenantKeyViolations(trx, await currentSchema(trx));
      // In a scratch schema: every other way to break the rule, next to a table that keeps it.
      const scratch = `citus_check_${randomUUID().replaceAll("-", "")}`;
      await trx.raw(`CREATE SCHEMA ${scratch}`);
      await trx.raw(`CREATE TABLE ${scratch}.good (tenant_id uuid, id text, PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, name), name text)`);
      await trx.raw(`CREATE TABLE ${scratch}.keyed (tenant_id uuid, id text, PRIMARY KEY (id, tenant_id))`);
      await trx.raw(`CREATE TABLE ${scratch}.constrained (tenant_id uuid, id text, PRIMARY KEY (tenant_id, id), CONSTRAINT constrained_id_key UNIQUE (id))`);
      await trx.raw(`CREATE TABLE ${scratch}.expression (tenant_id uuid, id text, PRIMARY KEY (tenant_id, id))`);
      await trx.raw(`CREATE UNIQUE INDEX expression_lower_idx ON ${scratch}.expression (lower(id), tenant_id)`);
      await trx.raw(`CREATE TABLE ${scratch}.untenanted (id text PRIMARY KEY)`);
      await trx.raw(`CREATE TABLE ${scratch}.unkeyed (tenant_id uuid, id text)`);
      return { real, scratch: await tenantKeyViolations(trx, scratch) };
    });
    expect(found.real.violations).toEqual(["workflow_executions: unique index workflow_executions_bad_idx leads with execution_id, not tenant_id"]);
    expect(found.scratch.violations.sort()).toEqual(
      [
        "constrained: unique constraint constrained_id_key leads with id, not tenant_id",
        "expression: unique index expression_lower_idx leads with an expression, not tenant_id",
        "keyed: primary key keyed_pkey leads with id, not tenant_id",
        "unkeyed: no primary key",
        "untenanted: no tenant_id column",
        "untenanted: primary key untenanted_pkey leads with id, not tenant_id",
      ].sort(),
    );
    // Nothing of it stayed.
    expect((await tenantKeyViolations(knex, await currentSchema(knex))).violations).toEqual([]);
  });
});
