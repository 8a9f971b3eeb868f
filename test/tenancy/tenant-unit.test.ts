import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statementTimeoutOf } from "../../src/connection/answer-timeout.js";
import { migrate } from "../../src/db/database.js";
import { WorkflowExecutionModel } from "../../src/db/models/workflow-execution.js";
import { TENANT_ROLE, tenantTransaction } from "../../src/tenancy/row-level-security.js";
import { TenantScope } from "../../src/tenancy/tenant-scope.js";
import { backendName } from "../support/backend.js";
import { countOwnRows, insertExecution, pooledState, type SessionState, singleConnection, state, unitPaths } from "./support/tenant-unit.js";

// The guarantees of a tenant unit of work (src/tenancy/row-level-security.ts),
// on each path it can take (the default one, src/tenancy/tenant-unit.ts, and
// on PostgreSQL the pipelined one, src/tenancy/pipelined-unit.ts): the
// work's statements run as the tenant role with the tenant bound; whatever
// happens, the connection goes back to the pool with its login role, no
// tenant, its own statement_timeout and no transaction open; a failed unit
// writes nothing it should not. Each test runs on ONE connection, so that the
// query after a unit surely reuses that unit's connection.

describe.each(unitPaths)(`tenant units on ${backendName}, $path path`, ({ path, pipelined }) => {
  let knex: Knex;
  let login: SessionState & { inTransaction: boolean };
  beforeAll(async () => {
    knex = await singleConnection(undefined, pipelined);
    await migrate(knex);
    login = await pooledState(knex);
  });
  afterAll(async () => {
    await knex.destroy();
  });

  it("the connection starts as its login role, no tenant, outside a transaction", () => {
    expect(login.role).not.toBe(TENANT_ROLE);
    expect(login.tenant).toBeNull();
    expect(login.inTransaction).toBe(false);
  });

  it.each(["statement", "transaction"] as const)("a %s unit runs as the tenant role with the tenant and the deadline (at most the statement timeout) bound, and leaves nothing on the connection", async (kind) => {
    const tenant = randomUUID();
    const inside = await tenantTransaction(knex, tenant, Date.now() + 60_000, (db) => state(db), kind);
    expect(inside.role).toBe(TENANT_ROLE);
    expect(inside.tenant).toBe(tenant);
    // No parallel workers and no sequential scan where an index serves, for a
    // tenant's statements (row-level-security.ts says why); pooledState below
    // shows the connection's own settings back (PostgreSQL's default is 2
    // workers, PGlite's 0, and sequential scans on).
    expect([inside.parallel, inside.seqscan]).toEqual(["0", "off"]);
    // PostgreSQL: never longer than DATABASE_STATEMENT_TIMEOUT_MS (20 s by
    // default); PGlite has no such cap.
    const cap = statementTimeoutOf(knex);
    expect(cap).toBe(backendName === "postgres" ? 20_000 : undefined);
    if (cap === undefined) {
      expect(Number(inside.timeout)).toBeGreaterThan(50_000);
      expect(Number(inside.timeout)).toBeLessThanOrEqual(60_000);
    } else {
      expect(Number(inside.timeout)).toBe(cap);
    }
    expect(await pooledState(knex)).toEqual(login);
    // A deadline sooner than the cap: the time left.
    const soon = await tenantTransaction(knex, tenant, Date.now() + 10_000, (db) => state(db), kind);
    expect(Number(soon.timeout)).toBeGreaterThan(5_000);
    expect(Number(soon.timeout)).toBeLessThanOrEqual(10_000);
    // No deadline: the cap on PostgreSQL, no statement_timeout of ours on PGlite.
    const unbounded = await tenantTransaction(knex, tenant, undefined, (db) => state(db), kind);
    expect(unbounded).toMatchObject({ role: TENANT_ROLE, tenant, timeout: cap === undefined ? login.timeout : String(cap) });
    expect(await pooledState(knex)).toEqual(login);
  });

  it("the statements of a transaction unit share one transaction, and it commits", async () => {
    const tenant = randomUUID();
    const seen = await new TenantScope(tenant, knex).transaction(async (trx) => {
      const first = (await trx.raw<{ rows: { xid: string }[] }>("SELECT txid_current()::text AS xid")).rows[0]!.xid;
      await insertExecution(trx, tenant, "e-1");
      const again = (await trx.raw<{ rows: { xid: string }[] }>("SELECT txid_current()::text AS xid")).rows[0]!.xid;
      return { first, again, state: await state(trx) };
    });
    expect(seen.again).toBe(seen.first);
    expect(seen.state).toMatchObject({ role: TENANT_ROLE, tenant });
    expect(await countOwnRows(knex, tenant)).toBe(1);
    expect(await pooledState(knex)).toEqual(login);
  });

  it("statements a transaction unit starts at once all run bound, in its one transaction", async () => {
    const tenant = randomUUID();
    const states = await new TenantScope(tenant, knex).transaction((trx) => Promise.all([state(trx), state(trx), state(trx)]));
    for (const s of states) expect(s).toMatchObject({ role: TENANT_ROLE, tenant });
    expect(await pooledState(knex)).toEqual(login);
  });

  it("a transaction unit whose statement fails rolls back what it wrote, and leaves the connection clean", async () => {
    const tenant = randomUUID();
    const failing = new TenantScope(tenant, knex).transaction(async (trx) => {
      await insertExecution(trx, tenant, "e-1");
      await trx.raw("SELECT 1 / 0");
    });
    await expect(failing).rejects.toMatchObject({ code: "22012" });
    expect(await countOwnRows(knex, tenant)).toBe(0);
    expect(await pooledState(knex)).toEqual(login);
  });

  it("a transaction unit whose first statement fails sends nothing more, and leaves the connection clean", async () => {
    const tenant = randomUUID();
    let after: unknown;
    const failing = new TenantScope(tenant, knex).transaction(async (trx) => {
      // Another tenant's row: refused by the policy, in the same batch as BEGIN and the binding.
      const refused = await insertExecution(trx, randomUUID(), "e-1").then(() => undefined, (err: unknown) => err);
      after = await insertExecution(trx, tenant, "e-2").then(() => undefined, (err: unknown) => err);
      throw refused;
    });
    await expect(failing).rejects.toMatchObject({ code: "42501" });
    expect(after).toBeInstanceOf(Error);
    expect(await countOwnRows(knex, tenant)).toBe(0);
    expect(await pooledState(knex)).toEqual(login);
  });

  it("a transaction unit whose work throws after writing rolls back, and leaves the connection clean", async () => {
    const tenant = randomUUID();
    const failing = new TenantScope(tenant, knex).transaction(async (trx) => {
      await insertExecution(trx, tenant, "e-1");
      throw new Error("changed my mind");
    });
    await expect(failing).rejects.toThrow("changed my mind");
    expect(await countOwnRows(knex, tenant)).toBe(0);
    expect(await pooledState(knex)).toEqual(login);
  });

  it("a statement unit whose statement fails writes nothing, and leaves the connection clean", async () => {
    const tenant = randomUUID();
    const scope = new TenantScope(tenant, knex);
    await expect(scope.run((db) => insertExecution(db, randomUUID(), "e-1"))).rejects.toMatchObject({ code: "42501" });
    await expect(scope.run((db) => db.raw("SELECT 1 / 0"))).rejects.toMatchObject({ code: "22012" });
    expect(await pooledState(knex)).toEqual(login);
    // The connection works as the tenant again right after.
    expect(await scope.run((db) => state(db))).toMatchObject({ role: TENANT_ROLE, tenant });
  });

  it("a statement unit refuses a second statement before it reaches the database; the first one, committed by then, stands", async () => {
    const tenant = randomUUID();
    const twice = new TenantScope(tenant, knex).run(async (db) => {
      await insertExecution(db, tenant, "e-1");
      await insertExecution(db, tenant, "e-2");
    });
    await expect(twice).rejects.toThrow(/ran a second statement/);
    const ids = await knex("workflow_executions").where("tenant_id", tenant).pluck("execution_id");
    expect(ids).toEqual(["e-1"]);
    expect(await pooledState(knex)).toEqual(login);
  });

  it.each(["statement", "transaction"] as const)("a %s unit that runs no statement sends nothing and returns its value", async (kind) => {
    expect(await tenantTransaction(knex, randomUUID(), Date.now() + 10_000, async () => 42, kind)).toBe(42);
    await expect(tenantTransaction(knex, randomUUID(), undefined, async () => {
      throw new Error("nothing to do");
    }, kind)).rejects.toThrow("nothing to do");
    expect(await pooledState(knex)).toEqual(login);
  });

  it.each(["statement", "transaction"] as const)("a %s unit whose deadline passes before its first statement sends nothing and answers DEADLINE_EXCEEDED", async (kind) => {
    const tenant = randomUUID();
    const late = tenantTransaction(knex, tenant, Date.now() + 50, async (db) => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      await insertExecution(db, tenant, "e-1");
    }, kind);
    await expect(late).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect(await countOwnRows(knex, tenant)).toBe(0);
    expect(await pooledState(knex)).toEqual(login);
  });

  it("a unit waiting for the pool's connection past its deadline answers DEADLINE_EXCEEDED, never runs, and gives the connection back", async () => {
    const tenant = randomUUID();
    const held = await knex.client.acquireConnection();
    let ran = false;
    const started = Date.now();
    try {
      const waiting = new TenantScope(tenant, knex, Date.now() + 100).run(async (db) => {
        ran = true;
        return insertExecution(db, tenant, "e-1");
      });
      await expect(waiting).rejects.toMatchObject({ code: Code.DeadlineExceeded });
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await knex.client.releaseConnection(held);
    }
    // The connection the abandoned unit got later went back to the pool: the next unit gets it.
    expect(await new TenantScope(tenant, knex, Date.now() + 10_000).run((db) => state(db))).toMatchObject({ role: TENANT_ROLE, tenant });
    expect(ran).toBe(false);
    expect(await countOwnRows(knex, tenant)).toBe(0);
    expect(await pooledState(knex)).toEqual(login);
  });

  it("units of many tenants at once, on one connection, each see only their own tenant and rows", async () => {
    const tenants = Array.from({ length: 8 }, () => randomUUID());
    await Promise.all(tenants.map((t) => new TenantScope(t, knex).run((db) => insertExecution(db, t, `own-${t}`))));
    const seen = await Promise.all(
      tenants.flatMap((t) => [
        new TenantScope(t, knex, Date.now() + 30_000).run(async (db) => ({
          t,
          state: await state(db),
        })),
        new TenantScope(t, knex).transaction(async (trx) => ({
          t,
          ids: (await trx.raw<{ rows: { execution_id: string }[] }>("SELECT execution_id FROM workflow_executions")).rows.map((r) => r.execution_id),
        })),
      ]),
    );
    for (const s of seen) {
      if ("state" in s) expect(s.state).toMatchObject({ role: TENANT_ROLE, tenant: s.t });
      else expect(s.ids).toEqual([`own-${s.t}`]);
    }
    expect(await pooledState(knex)).toEqual(login);
  });

  it("the Knex a unit hands its work is refused once the unit ended, and cannot open a transaction of its own", async () => {
    const tenant = randomUUID();
    const scope = new TenantScope(tenant, knex);
    let kept: Knex | undefined;
    await scope.run(async (db) => {
      kept = db;
      return state(db);
    });
    // A query built on the unit's Knex after its end (a bug) never runs on the
    // connection: the pipelined unit refuses it, and on the default path Knex's
    // own transaction does.
    await expect(insertExecution(kept!, tenant, "late")).rejects.toThrow(path === "pipelined" ? /has ended/ : /Transaction query already complete/);
    await expect(scope.transaction((trx) => trx.transaction(async () => 1))).rejects.toThrow(/cannot open a transaction/);
    expect(await countOwnRows(knex, tenant)).toBe(0);
    expect(await pooledState(knex)).toEqual(login);
  });

  it("Objection models and Knex builders work on a unit's Knex, and see only the tenant's rows", async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    for (const t of [a, b]) await new TenantScope(t, knex).run((db) => insertExecution(db, t, "shared-id"));
    const viaModel = await new TenantScope(a, knex).run(async (db) => WorkflowExecutionModel.query(db).where("execution_id", "shared-id"));
    expect(viaModel.map((r) => r.tenant_id)).toEqual([a]);
    const viaBuilder = await new TenantScope(b, knex).run((db) => db("workflow_executions").where("execution_id", "shared-id").select("tenant_id"));
    expect(viaBuilder).toEqual([{ tenant_id: b }]);
    const deleted = await new TenantScope(a, knex).run(async (db) => WorkflowExecutionModel.query(db).where("execution_id", "shared-id").delete());
    expect(deleted).toBe(1);
    expect(await countOwnRows(knex, b)).toBe(1);
    expect(await pooledState(knex)).toEqual(login);
  });

  it("a unit's queries are seen by the application's Knex 'query' listeners, binding excluded (on the default path, with Knex's BEGIN and COMMIT)", async () => {
    const tenant = randomUUID();
    const seen: string[] = [];
    const listener = (q: { sql: string }) => seen.push(q.sql);
    knex.on("query", listener);
    try {
      await new TenantScope(tenant, knex, Date.now() + 10_000).transaction(async (trx) => {
        await insertExecution(trx, tenant, "e-1");
        await trx.raw("SELECT 1");
      });
    } finally {
      knex.off("query", listener);
    }
    const work = [expect.stringMatching(/^INSERT INTO workflow_executions/), "SELECT 1"];
    expect(seen).toEqual(path === "pipelined" ? work : ["BEGIN;", ...work, "COMMIT;"]);
  });

  it("outside a unit, the tenant role sees no row of any tenant", async () => {
    const tenant = randomUUID();
    await new TenantScope(tenant, knex).run((db) => insertExecution(db, tenant, "e-1"));
    const unbound = await knex.transaction(async (trx) => {
      await trx.raw(`SET LOCAL ROLE ${TENANT_ROLE}`);
      return Number((await trx.raw<{ rows: { n: string }[] }>("SELECT count(*) AS n FROM workflow_executions")).rows[0]!.n);
    });
    expect(unbound).toBe(0);
    expect(await pooledState(knex)).toEqual(login);
  });
});
