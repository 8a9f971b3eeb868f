import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import type { Knex } from "knex";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase, migrate } from "../../src/db/database.js";
import { databaseErrorToConnect } from "../../src/errors/database-errors.js";
import { silentLogger } from "../../src/logging/logger.js";
import { createScratchDatabase, directPostgresUrl } from "../support/backend.js";
import { TENANT_ROLE } from "../../src/tenancy/row-level-security.js";
import { PLAN_ONCE, TenantScope } from "../../src/tenancy/tenant-scope.js";
import { insertExecution, singleConnection, state } from "./support/tenant-unit.js";

// Tenant units on PostgreSQL, where round trips can be counted and statements
// cancelled (see tenant-unit.test.ts for both backends).

/** A database of one connection to PostgreSQL itself (TEST_DATABASE_DIRECT_URL behind the CI's pooler), with named binding statements, whose round trips are counted. */
function countedConnection(pipelined: boolean) {
  const t = {
    knex: undefined as unknown as Knex,
    connection: undefined as unknown as pg.Client,
    roundTrips: 0,
    async open(): Promise<void> {
      t.knex = await singleConnection(true, pipelined);
      await migrate(t.knex);
      t.connection = (await t.knex.client.acquireConnection()) as pg.Client;
      await t.knex.client.releaseConnection(t.connection);
      // Each round trip, simple query or extended-protocol batch, ends with one
      // ReadyForQuery (counted on pg's Connection, a test-only look inside pg).
      (t.connection as unknown as { connection: NodeJS.EventEmitter }).connection.on("readyForQuery", () => t.roundTrips++);
    },
    close: () => t.knex.destroy(),
    /** `work`'s result and the round trips it took. */
    async trips<T>(work: () => Promise<T>): Promise<{ result: T; trips: number }> {
      const before = t.roundTrips;
      const result = await work();
      // The pool reuses the one connection counted here.
      expect(await t.knex.client.acquireConnection().then((c: unknown) => (t.knex.client.releaseConnection(c), c))).toBe(t.connection);
      return { result, trips: t.roundTrips - before };
    },
  };
  return t;
}

/** countedConnection, opened and closed by the describe block's hooks. */
function countedConnectionOfBlock(pipelined: boolean) {
  const t = countedConnection(pipelined);
  beforeAll(() => t.open());
  afterAll(() => t.close());
  return t;
}

/** A statement unit's statement is cancelled at the deadline, answers DEADLINE_EXCEEDED, and the connection is clean. */
async function cancelledAtDeadline(knex: Knex, connection: pg.Client): Promise<void> {
  const started = Date.now();
  const slow = new TenantScope(randomUUID(), knex, Date.now() + 300).run((db) => db.raw("SELECT pg_sleep(5)"));
  await expect(slow).rejects.toMatchObject({ code: Code.DeadlineExceeded });
  expect(Date.now() - started).toBeLessThan(3_000);
  expect(connection.getTransactionStatus()).toBe("I");
  const after = await state(knex);
  expect(after).toMatchObject({ tenant: null });
  expect(after.role).not.toBe(TENANT_ROLE);
}

describe("pipelined tenant units on PostgreSQL: round trips and statement timeout", () => {
  const t = countedConnectionOfBlock(true);
  const trips = <T>(work: () => Promise<T>) => t.trips(work);
  let knex: Knex;
  let connection: pg.Client;
  beforeAll(() => {
    ({ knex, connection } = t);
  });

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

  it("a statement marked PLAN_ONCE and run often is named on the connection and planned there once: later runs bind it by name, in statement units and transactions alike, one round trip as before, each answering its own rows; unmarked ones stay unnamed", async () => {
    // A connection of its own: the test above leaves its connection with unnamed statements for good.
    const own = countedConnection(true);
    await own.open();
    const { knex, connection } = own;
    const trips = <T>(work: () => Promise<T>) => own.trips(work);
    const tenant = randomUUID();
    const scope = new TenantScope(tenant, knex);
    const insert = (db: Knex, id: string) => insertExecution(db, tenant, id).options(PLAN_ONCE);
    for (let i = 0; i < 8; i++) expect((await trips(() => scope.run((db) => insert(db, `hot-${i}`)))).trips).toBe(1);
    for (let i = 0; i < 8; i++) {
      const { result, trips: n } = await trips(() => scope.run((db) => db("workflow_executions").where("execution_id", `hot-${i}`).first().options(PLAN_ONCE)));
      expect([n, result.execution_id, result.tenant_id]).toEqual([1, `hot-${i}`, tenant]);
    }
    for (let i = 0; i < 8; i++) {
      await scope.transaction(async (trx) => {
        expect(await trx("workflow_executions").where("execution_id", `hot-${i}`).first().options(PLAN_ONCE)).toMatchObject({ execution_id: `hot-${i}` });
        await trx("workflow_executions").where("execution_id", `hot-${i}`).update({ error_message: `changed ${i}` }).options(PLAN_ONCE);
        // Unmarked: planned on every run.
        await trx("workflow_executions").where("execution_id", `hot-${i}`).select("error_message");
      });
    }
    const { rows } = await knex.raw<{ rows: { statement: string; runs: number }[] }>(
      "SELECT statement, generic_plans + custom_plans AS runs FROM pg_prepared_statements WHERE name LIKE 'tenant_unit_hot_%'",
    );
    const runsOf = (start: string) => rows.filter((r) => r.statement.startsWith(start)).reduce((n, r) => n + Number(r.runs), 0);
    // The runs after the text turned hot (it may have turned hot in a test before) went by name.
    expect(runsOf("INSERT INTO workflow_executions")).toBeGreaterThanOrEqual(3);
    expect(runsOf('select * from "workflow_executions"')).toBeGreaterThanOrEqual(3 + 8);
    expect(runsOf('update "workflow_executions"')).toBeGreaterThanOrEqual(3);
    expect(rows.filter((r) => r.statement.startsWith('select "error_message"'))).toEqual([]);
    expect((await knex("workflow_executions").where({ tenant_id: tenant }).orderBy("execution_id").select("error_message")).map((r) => r.error_message)).toEqual(
      Array.from({ length: 8 }, (_, i) => `changed ${i}`),
    );
    // A named statement that fails (a duplicate key) leaves the name usable.
    await expect(scope.run((db) => insert(db, "hot-0"))).rejects.toMatchObject({ code: "23505" });
    await scope.run((db) => insert(db, "hot-8")); // (the failed batch's ReadyForQuery arrives after its error)
    expect((await trips(() => scope.run((db) => insert(db, "hot-9")))).trips).toBe(1);
    expect(await knex("workflow_executions").where({ tenant_id: tenant }).count<{ n: string }[]>({ n: "*" })).toEqual([{ n: "10" }]);
    expect(connection.getTransactionStatus()).toBe("I");
    await own.close();
  });

  it("a statement unit's statement is cancelled at the deadline, answers DEADLINE_EXCEEDED, and the connection is clean", () => cancelledAtDeadline(knex, connection));
});

describe("named statements of tenant units when a newer version's migration changes a table (a rolling deploy)", () => {
  it("a named SELECT * after a column was added answers UNAVAILABLE once, its connection discarded; the retry parses it again and sees the column", async () => {
    const scratch = await createScratchDatabase("stale_plan");
    try {
      await migrate(scratch.knex);
      // PostgreSQL itself, with named statements, as a server with DATABASE_URL alone runs.
      const url = new URL(scratch.url!);
      url.host = new URL(directPostgresUrl()).host;
      const knex = createDatabase({ databaseUrl: url.toString(), preparedStatements: true, poolMax: 1, logger: silentLogger });
      try {
        const tenant = randomUUID();
        const scope = new TenantScope(tenant, knex);
        await scope.run((db) => insertExecution(db, tenant, "s-1"));
        const get = () => scope.run((db) => db("workflow_executions").where("execution_id", "s-1").first().options(PLAN_ONCE));
        for (let i = 0; i < 6; i++) expect(await get()).toMatchObject({ execution_id: "s-1" });
        await scratch.knex.raw("ALTER TABLE workflow_executions ADD COLUMN note text DEFAULT 'added by a newer version'");
        const err = await get().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(databaseErrorToConnect(err)?.code).toBe(Code.Unavailable);
        expect(await get()).toMatchObject({ execution_id: "s-1", note: "added by a newer version" });
        for (let i = 0; i < 6; i++) expect(await get()).toMatchObject({ execution_id: "s-1", note: "added by a newer version" });
      } finally {
        await knex.destroy();
      }
    } finally {
      await scratch.drop();
    }
  });
});

describe("tenant units on PostgreSQL on the default path (DATABASE_PIPELINED_UNITS=false): round trips and statement timeout", () => {
  const t = countedConnectionOfBlock(false);

  it("a unit takes Knex's BEGIN, the binding, its statements and COMMIT, one round trip each", async () => {
    const tenant = randomUUID();
    const scope = new TenantScope(tenant, t.knex, Date.now() + 60_000);
    expect((await t.trips(() => scope.run((db) => insertExecution(db, tenant, "e-1")))).trips).toBe(4);
    expect((await t.trips(() => scope.run((db) => db("workflow_executions").where("execution_id", "e-1").first()))).result).toMatchObject({ tenant_id: tenant });
    expect((await t.trips(() => scope.transaction(async (trx) => {
      await insertExecution(trx, tenant, "e-2");
      await insertExecution(trx, tenant, "e-3");
    }))).trips).toBe(5);
    expect((await t.trips(() => scope.transaction(async () => 0))).trips).toBe(3);
    expect(t.connection.getTransactionStatus()).toBe("I");
    // Nothing named: the binding is parsed in every unit.
    const { rows } = await t.knex.raw<{ rows: unknown[] }>("SELECT name FROM pg_prepared_statements");
    expect(rows).toEqual([]);
  });

  it("a statement unit's statement is cancelled at the deadline, answers DEADLINE_EXCEEDED, and the connection is clean", () => cancelledAtDeadline(t.knex, t.connection));
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
