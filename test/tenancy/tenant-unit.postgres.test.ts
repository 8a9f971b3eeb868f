import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import type { Knex } from "knex";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../../src/db/database.js";
import { TENANT_ROLE } from "../../src/tenancy/row-level-security.js";
import { TenantScope } from "../../src/tenancy/tenant-scope.js";
import { insertExecution, singleConnection, state } from "./support/tenant-unit.js";

// Tenant units on PostgreSQL, where round trips can be counted and statements
// cancelled (see tenant-unit.test.ts for both backends).

describe("tenant units on PostgreSQL: round trips and statement timeout", () => {
  let knex: Knex;
  let connection: pg.Client;
  let roundTrips = 0;
  beforeAll(async () => {
    // PostgreSQL itself (TEST_DATABASE_DIRECT_URL behind the CI's pooler), with named binding statements.
    knex = await singleConnection(true);
    await migrate(knex);
    connection = (await knex.client.acquireConnection()) as pg.Client;
    await knex.client.releaseConnection(connection);
    // Each round trip, simple query or extended-protocol batch, ends with one ReadyForQuery.
    (connection as unknown as { connection: NodeJS.EventEmitter }).connection.on("readyForQuery", () => roundTrips++);
  });
  afterAll(async () => {
    await knex.destroy();
  });

  async function trips<T>(work: () => Promise<T>): Promise<{ result: T; trips: number }> {
    const before = roundTrips;
    const result = await work();
    // The pool reuses the one connection counted here.
    expect(await knex.client.acquireConnection().then((c: unknown) => (knex.client.releaseConnection(c), c))).toBe(connection);
    return { result, trips: roundTrips - before };
  }

  it("a statement unit takes one round trip, like the bare statement; a transaction unit one more than its statements", async () => {
    const tenant = randomUUID();
    const scope = new TenantScope(tenant, knex, Date.now() + 60_000);
    expect((await trips(() => knex.raw("SELECT 1"))).trips).toBe(1);
    expect((await trips(() => scope.run((db) => insertExecution(db, tenant, "e-1")))).trips).toBe(1);
    expect((await trips(() => scope.run((db) => db("workflow_executions").where("execution_id", "e-1").first()))).result).toMatchObject({ tenant_id: tenant });
    expect((await trips(() => scope.transaction(async (trx) => {
      await insertExecution(trx, tenant, "e-2");
      await insertExecution(trx, tenant, "e-3");
    }))).trips).toBe(3); // BEGIN + binding + first insert; second insert; COMMIT
    expect((await trips(() => scope.transaction(async () => 0))).trips).toBe(0);
    expect(connection.getTransactionStatus()).toBe("I");
  });

  it("the binding is prepared once per connection; if it vanishes (DEALLOCATE ALL), one unit fails and the connection goes on with unnamed statements", async () => {
    const tenant = randomUUID();
    const scope = new TenantScope(tenant, knex);
    const names = async () =>
      (await knex.raw<{ rows: { name: string }[] }>("SELECT name FROM pg_prepared_statements WHERE name LIKE 'tenant_unit_%'")).rows.map((r) => r.name);
    await scope.run((db) => state(db));
    expect(await names()).not.toEqual([]);
    await knex.raw("DEALLOCATE ALL");
    await expect(scope.run((db) => insertExecution(db, tenant, "e-1"))).rejects.toMatchObject({ code: "26000" });
    for (let i = 0; i < 3; i++) expect(await scope.run((db) => state(db))).toMatchObject({ role: TENANT_ROLE, tenant });
    expect(await names()).toEqual([]);
    expect(Number((await knex("workflow_executions").where("tenant_id", tenant).count<{ n: string }[]>({ n: "*" }))[0]!.n)).toBe(0);
    expect(connection.getTransactionStatus()).toBe("I");
  });

  it("a statement unit's statement is cancelled at the deadline, answers DEADLINE_EXCEEDED, and the connection is clean", async () => {
    const started = Date.now();
    const slow = new TenantScope(randomUUID(), knex, Date.now() + 300).run((db) => db.raw("SELECT pg_sleep(5)"));
    await expect(slow).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(connection.getTransactionStatus()).toBe("I");
    const after = await state(knex);
    expect(after).toMatchObject({ tenant: null });
    expect(after.role).not.toBe(TENANT_ROLE);
  });
});

describe("tenant units on PostgreSQL with DATABASE_PREPARED_STATEMENTS=false (behind a transaction-mode pooler)", () => {
  it("no unit names its binding, each unit is bound to its tenant, and nothing of it stays on the connection", async () => {
    const knex = await singleConnection(false);
    try {
      for (let i = 0; i < 3; i++) {
        const tenant = randomUUID();
        expect(await new TenantScope(tenant, knex).run((db) => state(db))).toMatchObject({ role: TENANT_ROLE, tenant });
        expect(await new TenantScope(tenant, knex).transaction((trx) => state(trx))).toMatchObject({ role: TENANT_ROLE, tenant });
      }
      const { rows } = await knex.raw<{ rows: { name: string }[] }>("SELECT name FROM pg_prepared_statements WHERE name LIKE 'tenant_unit_%'");
      expect(rows).toEqual([]);
      const after = await state(knex);
      expect(after).toMatchObject({ tenant: null });
      expect(after.role).not.toBe(TENANT_ROLE);
    } finally {
      await knex.destroy();
    }
  });
});
