// Deadlines on both backends; test/limits/deadline.postgres.test.ts has the
// PostgreSQL-only one (a statement blocked on a row lock is cancelled).
import { Code } from "@connectrpc/connect";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseErrorToConnect } from "../../src/errors/database-errors.js";
import { TenantScope } from "../../src/tenancy/tenant-scope.js";
import { backendName, createSingleConnectionDatabase, createTestDatabase } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { timedCode } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { DEADLINE_MS, execution, serverAnswer, SLACK_MS } from "./support/deadline.js";

describe("SQLSTATE 57014 (query_canceled)", () => {
  it("answers DEADLINE_EXCEEDED when the call's deadline passed, CANCELLED otherwise", () => {
    const err = Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014" });
    expect(databaseErrorToConnect(err, { deadlinePassed: true })?.code).toBe(Code.DeadlineExceeded);
    expect(databaseErrorToConnect(err)?.code).toBe(Code.Canceled);
    expect(databaseErrorToConnect(err, { deadlinePassed: true })?.rawMessage).not.toContain("statement timeout");
  });
});

describe(`a tenant transaction's deadline on ${backendName}`, () => {
  let knex: Knex;
  beforeAll(async () => {
    knex = await createTestDatabase();
  });
  afterAll(async () => {
    await knex.destroy();
  });

  it("runs work whose deadline is far (beyond what statement_timeout and timers can hold), and refuses work whose deadline has passed", async () => {
    const tenant = newTenant();
    const far = new TenantScope(tenant, knex, Date.now() + 30 * 24 * 3_600_000);
    expect(await far.run(async (db) => (await db.raw<{ rows: { one: number }[] }>("SELECT 1 AS one")).rows[0]!.one)).toBe(1);
    // Within the statement timeout's cap (20 s by default on PostgreSQL, see
    // src/connection/answer-timeout.ts): the time left.
    const near = new TenantScope(tenant, knex, Date.now() + 15_000);
    const timeoutMs = await near.run(async (db) =>
      Number((await db.raw<{ rows: { ms: string }[] }>("SELECT setting AS ms FROM pg_settings WHERE name = 'statement_timeout'")).rows[0]!.ms),
    );
    expect(timeoutMs).toBeGreaterThan(10_000);
    expect(timeoutMs).toBeLessThanOrEqual(15_000);
    const past = new TenantScope(tenant, knex, Date.now() - 1);
    let ran = false;
    await expect(past.run(async () => (ran = true))).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect(ran).toBe(false);
  });
});

describe(`on ${backendName}: a client deadline bounds the wait for a database connection`, () => {
  let t: TestServer;
  let knex: Knex;
  beforeAll(async () => {
    // One connection (PGlite only ever has one), so that the test can hold it.
    knex = await createSingleConnectionDatabase();
    t = await startTestServer({}, knex);
  });
  afterAll(async () => {
    await t.close();
    await knex.destroy();
  });

  it("a save while another transaction holds the only connection answers DEADLINE_EXCEEDED at its deadline and is never written", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    await client.saveWorkflowExecution(execution("original"));

    const holder = await knex.transaction();
    let answer: Record<string, unknown> | undefined;
    try {
      const { code, ms } = await timedCode(client.saveWorkflowExecution(execution("late write"), { timeoutMs: DEADLINE_MS }));
      expect(code).toBe(Code.DeadlineExceeded);
      expect(ms).toBeLessThan(DEADLINE_MS + SLACK_MS);
      // The server answered at the deadline, while the connection is still held.
      answer = await serverAnswer(t, tenant, SLACK_MS);
    } finally {
      await holder.rollback();
    }
    expect(answer?.code).toBe("DEADLINE_EXCEEDED");
    expect(answer?.durationMs).toBeLessThan(DEADLINE_MS + SLACK_MS);
    // Once the connection is free, the abandoned save still does not happen.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const stored = await client.getWorkflowExecution({ executionId: "e" });
    expect(stored.execution?.errorMessage).toBe("original");
  });
});
