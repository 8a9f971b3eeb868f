import { Code } from "@connectrpc/connect";
import { afterAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createDatabase } from "../../src/db/database.js";
import { databaseErrorToConnect } from "../../src/errors/database-errors.js";
import { silentLogger } from "../../src/logging/logger.js";
import { workflowClient } from "../support/clients.js";
import { errorOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { createTestDatabase } from "../support/backend.js";

const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

describe("when the database is unreachable", () => {
  it("PostgreSQL that refuses connections: calls answer UNAVAILABLE without driver or SQL details", async () => {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    const knex = createDatabase({ databaseUrl: "postgres://postgres@127.0.0.1:1/none", poolMax: 1, logger: silentLogger });
    const t = await startTestServer({}, knex);
    servers.push(t);
    const client = workflowClient(t.baseUrl, newTenant());
    const calls = [
      client.saveWorkflowExecution({ execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING } }),
      client.getWorkflowExecution({ executionId: "e" }),
      client.listWorkflowExecutions({}),
      client.deleteWorkflowExecutions({ completedBefore: { seconds: 1n, nanos: 0 } }),
      (async () => {
        for await (const _ of client.streamIncompleteWorkflows({})) {
          // no rows can arrive
        }
      })(),
    ];
    for (const call of calls) {
      const err = await errorOf(call);
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).not.toMatch(/ECONNREFUSED|select|insert|127\.0\.0\.1|workflow_executions/i);
    }
    await knex.destroy();
  });

  it("a database closed under a running server: calls answer UNAVAILABLE, not INTERNAL", async () => {
    const knex = await createTestDatabase();
    const t = await startTestServer({}, knex);
    servers.push(t);
    const client = workflowClient(t.baseUrl, newTenant());
    await client.saveWorkflowExecution({ execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING } });
    await knex.destroy();
    const err = await errorOf(client.getWorkflowExecution({ executionId: "e" }));
    expect(err.code).toBe(Code.Unavailable);
  });

  it("a statement the database never answered (pg's query_timeout; Knex puts the SQL before pg's message) answers UNAVAILABLE without the SQL", () => {
    // What Knex throws for a statement of its own whose answer did not come within
    // the connection's query_timeout (src/connection/answer-timeout.ts), as during a partition.
    for (const message of ["Query read timeout", "select * from \"workflow_executions\" where \"tenant_id\" = $1 - Query read timeout"]) {
      const err = databaseErrorToConnect(new Error(message));
      expect(err?.code, message).toBe(Code.Unavailable);
      expect(err?.rawMessage).not.toMatch(/select|workflow_executions|timeout/i);
    }
    // Another error that merely mentions it is not one.
    expect(databaseErrorToConnect(new Error("Query read timeout exceeded by the test"))).toBeUndefined();
  });
});

