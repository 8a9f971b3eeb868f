// PostgreSQL only (vitest.config.ts collects *.postgres.test.ts files only
// when TEST_DATABASE_URL is set): a statement blocked on a row lock is
// cancelled in the database at the call's deadline. PGlite has a single
// connection, so no other transaction can hold a lock the save waits on.
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { workflowClient, type Protocol } from "../support/clients.js";
import { timedCode } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { DEADLINE_MS, execution, serverAnswer, SLACK_MS } from "./support/deadline.js";

describe("on PostgreSQL: a client deadline cancels the running SQL", () => {
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

        const call = timedCode(client.saveWorkflowExecution(execution("late write"), { timeoutMs: DEADLINE_MS }));
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
