import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { RetentionService } from "../../gen/orchestration/state/v1/retention_service_pb.js";
import { defaultConfig } from "../../src/config.js";
import { migrate } from "../../src/db/database.js";
import { connectClient, workflowClient } from "../support/clients.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { createScratchDatabase } from "../support/backend.js";

// Server defaults (RETENTION_*) apply to every tenant, those that never saved
// a policy included. A background pass with defaults visits every tenant of
// the database, so this file has a database of its own: a fresh in-memory
// PGlite, or a scratch PostgreSQL database created next to TEST_DATABASE_URL's
// and dropped at the end.

const DAY = 86_400;
const ago = (seconds: number) => ({ seconds: BigInt(Math.floor(Date.now() / 1000) - seconds), nanos: 0 });

let knex: Knex;
let scratch: Awaited<ReturnType<typeof createScratchDatabase>> | undefined;
let t: TestServer;

beforeAll(async () => {
  scratch = await createScratchDatabase("retention_defaults");
  knex = scratch.knex;
  await migrate(knex);
  t = await startTestServer({ retentionDefaults: { ...defaultConfig.retentionDefaults, completedExecutionMaxAge: DAY } }, knex);
});
afterAll(async () => {
  await t?.close();
  await scratch?.drop();
});

async function ids(tenant: string): Promise<string[]> {
  return (await workflowClient(t.baseUrl, tenant).listWorkflowExecutions({})).executions.map((e) => e.executionId).sort();
}

describe("server retention defaults", () => {
  it("a background pass applies them to tenants without a policy; a tenant's policy overrides them", async () => {
    const [plain, keeper] = [newTenant(), newTenant()];
    for (const tenant of [plain, keeper]) {
      const client = workflowClient(t.baseUrl, tenant);
      await client.saveWorkflowExecution({ execution: { executionId: "old", workflowName: "w", status: WorkflowStatus.COMPLETED, startedAt: ago(3 * DAY), completedAt: ago(2 * DAY) } });
      await client.saveWorkflowExecution({ execution: { executionId: "new", workflowName: "w", status: WorkflowStatus.COMPLETED } });
    }
    // keeper keeps COMPLETED executions forever (0), whatever the server's default.
    await connectClient(RetentionService, t.baseUrl, keeper).saveRetentionPolicy({ policy: { completedExecutionMaxAge: { seconds: 0n, nanos: 0 } } });
    const pass = await t.server.retention.runOnce();
    expect(pass).toMatchObject({ outcome: "completed", deleted: { completedExecutions: 1 } });
    expect(await ids(plain)).toEqual(["new"]);
    expect(await ids(keeper)).toEqual(["new", "old"]);
  });
});
