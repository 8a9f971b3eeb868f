import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createDatabase, migrate } from "../../src/db/database.js";
import { databaseErrorToConnect } from "../../src/errors/database-errors.js";
import { silentLogger } from "../../src/logging/logger.js";
import { TenantScope } from "../../src/tenancy/tenant-scope.js";
import { backendName, createTestDatabase } from "../support/backend.js";
import { workflowClient, type Protocol } from "../support/clients.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

const DEADLINE_MS = 400;
// How late after the deadline the answer may come: generous for slow CI machines.
const SLACK_MS = 1_500;

async function codeAndMs(call: Promise<unknown>): Promise<{ code: Code | "ok"; ms: number }> {
  const start = Date.now();
  try {
    await call;
    return { code: "ok", ms: Date.now() - start };
  } catch (err) {
    return { code: ConnectError.from(err).code, ms: Date.now() - start };
  }
}

/**
 * The server's own answer (its log line) to the tenant's second save, the one
 * with a deadline; not the client's: a client gives up at its deadline
 * whatever the server does. Waits up to `ms`.
 */
async function serverAnswer(t: TestServer, tenant: string, ms: number): Promise<Record<string, unknown> | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const lines = t.logs.filter((l) => l.msg === "rpc" && l.tenant === tenant && l.procedure === "orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution");
    if (lines.length >= 2 || Date.now() > end) return lines[1];
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const execution = (errorMessage: string) => ({
  execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING, errorMessage },
});

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
    const near = new TenantScope(tenant, knex, Date.now() + 60_000);
    const timeoutMs = await near.run(async (db) =>
      Number((await db.raw<{ rows: { ms: string }[] }>("SELECT setting AS ms FROM pg_settings WHERE name = 'statement_timeout'")).rows[0]!.ms),
    );
    expect(timeoutMs).toBeGreaterThan(50_000);
    expect(timeoutMs).toBeLessThanOrEqual(60_000);
    const past = new TenantScope(tenant, knex, Date.now() - 1);
    let ran = false;
    await expect(past.run(async () => (ran = true))).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect(ran).toBe(false);
  });
});

describe.runIf(backendName === "postgres")("on PostgreSQL only: a client deadline cancels the running SQL", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t.close();
  });

  it.each<Protocol>(["grpc", "connect"])(
    "a save blocked on a row lock, with a %s deadline, answers DEADLINE_EXCEEDED, stops waiting in the database and never writes",
    async (protocol) => {
      const tenant = newTenant();
      const client = workflowClient(t.baseUrl, tenant, protocol);
      await client.saveWorkflowExecution(execution("original"));

      // Another transaction holds the row's lock, so the save's upsert waits.
      const holder = await t.knex.transaction();
      try {
        await holder.raw(`SELECT 1 FROM workflow_executions WHERE tenant_id = ? AND execution_id = 'e' FOR UPDATE`, [tenant]);
        const holderPid = (await holder.raw<{ rows: { pid: number }[] }>(`SELECT pg_backend_pid() AS pid`)).rows[0]!.pid;
        const blockedByHolder = async () =>
          Number((await t.knex.raw<{ rows: { n: string }[] }>(
            `SELECT count(*) AS n FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))`, [holderPid],
          )).rows[0]!.n);

        const call = codeAndMs(client.saveWorkflowExecution(execution("late write"), { timeoutMs: DEADLINE_MS }));
        // The setup really blocks the save in the database (else this test proves nothing).
        let blocked = 0;
        for (let i = 0; i < 50 && blocked === 0; i++) {
          blocked = await blockedByHolder();
          if (blocked === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        }
        expect(blocked).toBe(1);

        const { code, ms } = await call;
        expect(code).toBe(Code.DeadlineExceeded);
        expect(ms).toBeLessThan(DEADLINE_MS + SLACK_MS);
        // The server answered too, while the lock is still held: PostgreSQL cancelled the statement.
        const answer = await serverAnswer(t, tenant, SLACK_MS);
        expect(answer?.code).toBe("DEADLINE_EXCEEDED");
        expect(await blockedByHolder()).toBe(0);
      } finally {
        await holder.commit();
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      const stored = await client.getWorkflowExecution({ executionId: "e" });
      expect(stored.execution?.errorMessage).toBe("original");
    },
  );
});

describe(`on ${backendName}: a client deadline bounds the wait for a database connection`, () => {
  let t: TestServer;
  let knex: Knex;
  beforeAll(async () => {
    // One connection (PGlite only ever has one), so that the test can hold it.
    const url = process.env.TEST_DATABASE_URL;
    knex = url === undefined ? await createTestDatabase() : createDatabase({ databaseUrl: url, poolMax: 1, logger: silentLogger });
    await migrate(knex);
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
      const { code, ms } = await codeAndMs(client.saveWorkflowExecution(execution("late write"), { timeoutMs: DEADLINE_MS }));
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
