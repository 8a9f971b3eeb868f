import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";
import { MAINTENANCE_ROLE } from "../../src/db/queries/maintenance.js";
import { TENANT_ROLE } from "../../src/tenancy/row-level-security.js";
import { TenantScope } from "../../src/tenancy/tenant-scope.js";
import { backendName, createTestDatabase, postgresOptions } from "../support/backend.js";

// These tests go through the application's connection path, TenantScope, and
// run queries that deliberately forget the tenant filter: only row-level
// security stands between them and the other tenant's rows.

let knex: Knex;
beforeAll(async () => {
  knex = await createTestDatabase();
});
afterAll(async () => {
  await knex.destroy();
});

const TABLES = ["workflow_executions", "circuit_breakers", "circuit_breaker_transitions", "routing_decisions", "agent_statistics", "retention_policies"];

/** One row of every table for the scope's tenant, written through the scope (as the services do). */
async function seed(scope: TenantScope, key: string): Promise<void> {
  await scope.transaction(async (trx) => {
    const tenant = scope.tenantId;
    await trx.raw(
      `INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, started_at) VALUES (?, ?, 'w', 'RUNNING', now())`,
      [tenant, key],
    );
    await trx.raw(`INSERT INTO circuit_breakers (tenant_id, agent_key, state) VALUES (?, ?, 'CLOSED')`, [tenant, key]);
    await trx.raw(
      `INSERT INTO circuit_breaker_transitions (tenant_id, agent_key, from_state, to_state, reason) VALUES (?, ?, 'CLOSED', 'OPEN', 'SAVED')`,
      [tenant, key],
    );
    await trx.raw(
      `INSERT INTO routing_decisions (tenant_id, decision_id, task_id, selected_agent, success, routed_at) VALUES (?, ?, ?, 'a', true, now())`,
      [tenant, randomUUID(), key],
    );
    await trx.raw(`INSERT INTO agent_statistics (tenant_id, agent_key) VALUES (?, ?)`, [tenant, key]);
    // One policy per tenant.
    await trx.raw(`INSERT INTO retention_policies (tenant_id) VALUES (?) ON CONFLICT (tenant_id) DO NOTHING`, [tenant]);
  });
}

/** Every row of `table` as the superuser test connection sees it (bypassing row-level security). */
async function allRows(table: string, tenants: string[]): Promise<Record<string, unknown>[]> {
  return knex(table).whereIn("tenant_id", tenants).orderBy("tenant_id");
}

describe(`row-level security on ${backendName}`, () => {
  it("every table of ours has row-level security enabled and forced, with the tenant policy, and the tenant role cannot bypass it", async () => {
    const { rows: tables } = await knex.raw<{ rows: { relname: string; rls: boolean; forced: boolean; policies: string }[] }>(
      `SELECT c.relname, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
              (SELECT string_agg(p.polname || ':' || p.polcmd::text || ':' ||
                        coalesce((SELECT string_agg(r.rolname, ',') FROM pg_roles r WHERE r.oid = ANY (p.polroles)), 'public'), ' ' ORDER BY p.polname)
                 FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
         FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
          AND c.relname NOT LIKE 'knex_migrations%'
          -- Partitions (of routing_decisions) are reached only through their
          -- parent, whose policies apply to them; test/routing-audit/partition-migration.test.ts
          -- shows the tenant role has no privilege on them directly.
          AND NOT c.relispartition
        ORDER BY c.relname`,
    );
    // A table added later without row-level security fails here.
    expect(tables.map((t) => t.relname).sort()).toEqual(expect.arrayContaining([...TABLES].sort()));
    // The tenant policy for every command and role ("*": ALL), and the read-only
    // one of the maintenance role ("r": SELECT), and nothing else.
    for (const t of tables) {
      expect({ table: t.relname, rls: t.rls, forced: t.forced, policies: t.policies }).toEqual({
        table: t.relname,
        rls: true,
        forced: true,
        policies: `maintenance_read:r:${MAINTENANCE_ROLE} tenant_isolation:*:public`,
      });
    }
    for (const role of [TENANT_ROLE, MAINTENANCE_ROLE]) {
      const { rows: roles } = await knex.raw<{ rows: { rolsuper: boolean; rolbypassrls: boolean; rolcanlogin: boolean }[] }>(
        `SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = ?`,
        [role],
      );
      expect(roles, role).toEqual([{ rolsuper: false, rolbypassrls: false, rolcanlogin: false }]);
    }
  });

  it("the maintenance role reads every tenant's rows and can change none", async () => {
    const [a, b] = [new TenantScope(randomUUID(), knex), new TenantScope(randomUUID(), knex)];
    await seed(a, "a-1");
    await seed(b, "b-1");
    const asMaintenance = <T>(work: (trx: Knex.Transaction) => Promise<T>) =>
      knex.transaction(async (trx) => {
        await trx.raw("SELECT set_config('role', ?, true)", [MAINTENANCE_ROLE]);
        return work(trx);
      });
    for (const table of TABLES) {
      const seen = await asMaintenance(async (trx) =>
        (await trx.raw<{ rows: { tenant_id: string }[] }>(`SELECT DISTINCT tenant_id FROM ${table} WHERE tenant_id IN (?, ?)`, [a.tenantId, b.tenantId])).rows,
      );
      expect(seen.map((r) => r.tenant_id).sort(), table).toEqual([a.tenantId, b.tenantId].sort());
      for (const statement of [`DELETE FROM ${table} WHERE tenant_id = ?`, `UPDATE ${table} SET tenant_id = tenant_id WHERE tenant_id = ?`]) {
        const err = await asMaintenance((trx) => trx.raw(statement, [a.tenantId])).then(() => undefined, (e: unknown) => e as { code?: string });
        expect(err?.code, `${statement}`).toBe("42501"); // insufficient_privilege
      }
    }
  });

  it("a query without a tenant filter, through tenant A's scope, reads only A's rows of every table", async () => {
    const [a, b] = [new TenantScope(randomUUID(), knex), new TenantScope(randomUUID(), knex)];
    await seed(a, "a-1");
    await seed(b, "b-1");
    await seed(b, "b-2");
    for (const table of TABLES) {
      const seen = await a.run(async (db) => (await db.raw<{ rows: { tenant_id: string }[] }>(`SELECT tenant_id FROM ${table}`)).rows);
      // Other test files' tenants are invisible too: exactly A's one row.
      expect(seen, table).toEqual([{ tenant_id: a.tenantId }]);
      const counted = await a.run(async (db) => (await db.raw<{ rows: { n: string }[] }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]!.n);
      expect(Number(counted), table).toBe(1);
    }
  });

  it("an UPDATE and a DELETE without WHERE, through tenant A's scope, change only A's rows", async () => {
    const [a, b] = [new TenantScope(randomUUID(), knex), new TenantScope(randomUUID(), knex)];
    await seed(a, "a-1");
    await seed(b, "b-1");
    const before = await allRows("workflow_executions", [b.tenantId]);

    // Each statement's row count is checked inside its transaction, which
    // rolls back when it is wrong: were isolation broken, these statements
    // would otherwise change every tenant's rows of the shared test database.
    const unscoped = (sql: string) =>
      a.transaction(async (trx) => {
        const { rowCount } = await trx.raw<{ rowCount: number }>(sql);
        if (rowCount !== 1) throw new Error(`${sql} changed ${rowCount} rows, not only A's one; rolled back`);
        return rowCount;
      });
    expect(await unscoped(`UPDATE workflow_executions SET error_message = 'touched'`)).toBe(1);
    expect(await allRows("workflow_executions", [b.tenantId])).toEqual(before);
    expect((await allRows("workflow_executions", [a.tenantId]))[0]!.error_message).toBe("touched");

    for (const table of TABLES) {
      expect(await unscoped(`DELETE FROM ${table}`), table).toBe(1);
      expect(await allRows(table, [a.tenantId]), table).toEqual([]);
      expect(await allRows(table, [b.tenantId]), table).toHaveLength(1);
    }
  });

  it("writing a row of tenant B through tenant A's scope is refused, and nothing is written", async () => {
    const [a, b] = [new TenantScope(randomUUID(), knex), new TenantScope(randomUUID(), knex)];
    const key = `a-${randomUUID()}`;
    await seed(a, key);
    const insert = a.run((db) =>
      db.raw(`INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, started_at) VALUES (?, 'x', 'w', 'RUNNING', now())`, [b.tenantId]),
    );
    await expect(insert).rejects.toMatchObject({ code: "42501" }); // new row violates row-level security policy
    // Filtered by a unique id only, so that broken isolation moves no other test's rows.
    const move = a.run((db) => db.raw(`UPDATE workflow_executions SET tenant_id = ? WHERE execution_id = ?`, [b.tenantId, key]));
    await expect(move).rejects.toMatchObject({ code: "42501" });
    expect(await allRows("workflow_executions", [b.tenantId])).toEqual([]);
    expect(await allRows("workflow_executions", [a.tenantId])).toHaveLength(1);
  });

  it("a pooled connection leaves a tenant transaction with its login role and no tenant", async () => {
    // One connection, so that the next query surely reuses it.
    const url = process.env.TEST_DATABASE_URL;
    const single = url === undefined ? knex : createDatabase({ ...postgresOptions(url), poolMax: 1, logger: silentLogger });
    try {
      const { rows: [login] } = await single.raw<{ rows: { role: string }[] }>(`SELECT current_user AS role`);
      const a = new TenantScope(randomUUID(), single);
      const inside = await a.run(async (db) =>
        (await db.raw<{ rows: { role: string; tenant: string }[] }>(`SELECT current_user AS role, current_setting('app.tenant_id', true) AS tenant`)).rows[0],
      );
      expect(inside).toEqual({ role: TENANT_ROLE, tenant: a.tenantId });
      const after = (await single.raw<{ rows: { role: string; tenant: string | null }[] }>(
        `SELECT current_user AS role, NULLIF(current_setting('app.tenant_id', true), '') AS tenant`,
      )).rows[0];
      expect(after).toEqual({ role: login!.role, tenant: null });
      // And outside a tenant transaction, the tenant role sees no row at all.
      const unbound = await single.transaction(async (trx) => {
        await trx.raw(`SET LOCAL ROLE ${TENANT_ROLE}`);
        return (await trx.raw<{ rows: { n: string }[] }>(`SELECT count(*) AS n FROM workflow_executions`)).rows[0]!.n;
      });
      expect(Number(unbound)).toBe(0);
    } finally {
      if (single !== knex) await single.destroy();
    }
  });
});
