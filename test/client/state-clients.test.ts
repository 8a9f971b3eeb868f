import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runExample } from "../../examples/node-client/main.js";
import { createStateClients, WorkflowStatus } from "../../src/client/index.js";
import { keyFixture } from "../auth/support.js";
import { codeOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// The package's client entry (`orchestrator-state/client`) and its example,
// against real servers: one in development mode, one with API keys.
let open: TestServer;
let keyed: TestServer;
const keys = keyFixture();

beforeAll(async () => {
  [open, keyed] = await Promise.all([startTestServer(), startTestServer({ authKeys: keys.authKeys })]);
});
afterAll(async () => {
  await Promise.all([open.close(), keyed.close()]);
});

describe("createStateClients", () => {
  it.each(["grpc", "connect", "grpc-web"] as const)(
    "runs the example over %s: a step saved with its etag, the call reported, a BadRequest read",
    async (protocol) => {
      const tenantId = newTenant();
      const result = await runExample({ baseUrl: open.baseUrl, tenantId, protocol });
      expect(result.permitted).toBe(true);
      expect(result.saved.status).toBe(WorkflowStatus.COMPLETED);
      expect(result.saved.stepExecutions.map((s) => [s.stepId, s.agentKey, s.status])).toEqual([
        ["fetch", "fetcher-1", WorkflowStatus.COMPLETED],
      ]);
      expect(result.badFields).toEqual(["execution_id"]);

      // What the example wrote is the tenant's, and only the tenant's.
      const state = createStateClients({ baseUrl: open.baseUrl, tenantId });
      const stored = await state.workflowState.getWorkflowExecution({ executionId: "node-example-1" });
      expect(stored.execution?.etag).toBe(result.saved.etag);
      const stats = await state.statistics.getAgentStatistics({ agentKey: "fetcher-1" });
      expect([stats.statistics?.totalTasks, stats.statistics?.successfulTasks]).toEqual([1n, 1n]);
      const other = createStateClients({ baseUrl: open.baseUrl, tenantId: newTenant(), protocol });
      expect(await codeOf(other.workflowState.getWorkflowExecution({ executionId: "node-example-1" }))).toBe(Code.NotFound);
      state.close();
      other.close();
    },
  );

  it("sends the API key, which names the tenant without x-tenant-id", async () => {
    const state = createStateClients({ baseUrl: keyed.baseUrl, apiKey: keys.writerA });
    await state.workflowState.saveWorkflowExecution({
      execution: { executionId: "keyed", workflowName: "w", status: WorkflowStatus.RUNNING },
    });
    const asTenantA = createStateClients({ baseUrl: keyed.baseUrl, apiKey: keys.readerA, tenantId: keys.tenantA });
    expect((await asTenantA.workflowState.getWorkflowExecution({ executionId: "keyed" })).execution?.workflowName).toBe("w");
    const wrongKey = createStateClients({ baseUrl: keyed.baseUrl, apiKey: "not-a-configured-key-0123456789" });
    expect(await codeOf(wrongKey.workflowState.getWorkflowExecution({ executionId: "keyed" }))).toBe(Code.Unauthenticated);
    const otherTenant = createStateClients({ baseUrl: keyed.baseUrl, apiKey: keys.writerA, tenantId: keys.tenantB });
    expect(await codeOf(otherTenant.workflowState.getWorkflowExecution({ executionId: "keyed" }))).toBe(Code.PermissionDenied);
    for (const c of [state, asTenantA, wrongKey, otherTenant]) c.close();
  });

  it("refuses options naming neither a tenant nor a key", () => {
    expect(() => createStateClients({ baseUrl: open.baseUrl })).toThrow(/tenantId, apiKey/);
  });

  it("close() ends the connection: a call in flight fails with CANCELED, and the next call connects again", async () => {
    const state = createStateClients({ baseUrl: open.baseUrl, tenantId: newTenant() });
    const watching = (async () => {
      // The first message (caughtUp) proves the stream is open; then close.
      for await (const _ of state.circuitBreakers.watchCircuitBreakers({})) state.close();
    })();
    expect(await codeOf(watching)).toBe(Code.Canceled);
    expect(await codeOf(state.workflowState.listWorkflowExecutions({}))).toBe("ok");
    state.close();
  });
});
