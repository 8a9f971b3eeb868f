import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  type WorkflowExecution,
  WorkflowExecutionSchema,
  WorkflowStatus,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName } from "../support/backend.js";
import { PROTOCOL_CODECS, workflowClient } from "../support/clients.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

/** An execution that sets every field, with timestamps at microsecond precision. */
function fullExecution(id: string): WorkflowExecution {
  return create(WorkflowExecutionSchema, {
    executionId: id,
    workflowName: "fulfil-order",
    status: WorkflowStatus.FAILED,
    definition: {
      name: "fulfil-order",
      version: "1.4.0",
      steps: [
        {
          stepId: "fetch",
          name: "Fetch the order",
          requiredCapability: "erp-read",
          taskType: "lookup",
          dependsOn: [],
          parameters: { source: "erp", retries: 2, nested: { list: [1, "two", true, null] } },
          timeout: { seconds: 30n, nanos: 500_000_000 },
          retryPolicy: {
            maxAttempts: 3,
            initialBackoff: { seconds: 1n },
            maxBackoff: { seconds: 10n },
            backoffMultiplier: 2.5,
          },
        },
        { stepId: "ship", name: "Ship it", dependsOn: ["fetch"], taskType: "act" },
      ],
    },
    context: { orderId: 42, customer: { name: "Ada", vip: true }, items: ["a", "b"], note: null },
    stepExecutions: [
      {
        stepId: "fetch",
        status: WorkflowStatus.COMPLETED,
        agentKey: "agent-7",
        attempt: 2,
        startedAt: { seconds: 1_790_000_000n, nanos: 123_456_789 },
        completedAt: { seconds: 1_790_000_010n, nanos: 1_000 },
      },
      { stepId: "ship", status: WorkflowStatus.FAILED, agentKey: "agent-9", attempt: 1, errorMessage: "carrier down" },
    ],
    stepOutputs: {
      fetch: { kind: { case: "structValue", value: { fields: { items: { kind: { case: "numberValue", value: 3 } } } } } },
      ship: { kind: { case: "nullValue", value: 0 } },
    },
    errorMessage: "step ship failed: carrier down",
    startedAt: { seconds: 1_790_000_000n, nanos: 654_321_000 },
    completedAt: { seconds: 1_790_000_020n, nanos: 999_999_000 },
    initiatedBy: "user:ada@example.com",
    labels: { team: "fulfilment", region: "eu-west" },
  });
}

/** The client-owned fields of an execution (what a save must give back unchanged). */
function clientFields(e: WorkflowExecution) {
  const { etag: _etag, createTime: _c, updateTime: _u, ...rest } = e;
  return rest;
}

describe(`SaveWorkflowExecution / GetWorkflowExecution on ${backendName}`, () => {
  // Binary answers are written straight from the stored row (src/services/workflow-state/encoding/), JSON ones from messages.
  it.each(PROTOCOL_CODECS)("round-trips every field over %s in %s", async (protocol, codec, useBinaryFormat) => {
    const client = workflowClient(t.baseUrl, newTenant(), protocol, useBinaryFormat);
    const execution = fullExecution(`full-${protocol}-${codec}`);
    const saved = await client.saveWorkflowExecution({ execution });
    expect(clientFields(saved.execution!)).toEqual(clientFields(execution));
    expect(saved.execution!.etag).not.toBe("");
    expect(saved.execution!.createTime).toBeDefined();
    expect(saved.execution!.updateTime).toEqual(saved.execution!.createTime);

    const got = await client.getWorkflowExecution({ executionId: execution.executionId });
    expect(got.execution).toEqual(saved.execution);
  });

  it("truncates timestamps to microseconds, as the contract says", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const saved = await client.saveWorkflowExecution({
      execution: {
        executionId: "precise",
        workflowName: "w",
        status: WorkflowStatus.RUNNING,
        startedAt: { seconds: 1_790_000_000n, nanos: 123_456_789 },
      },
    });
    expect(saved.execution!.startedAt).toMatchObject({ seconds: 1_790_000_000n, nanos: 123_456_000 });
  });

  it("defaults started_at to the creation time and keeps it on later saves that leave it unset", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const first = await client.saveWorkflowExecution({
      execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.PENDING },
    });
    expect(first.execution!.startedAt).toEqual(first.execution!.createTime);
    const second = await client.saveWorkflowExecution({
      execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING },
    });
    expect(second.execution!.startedAt).toEqual(first.execution!.startedAt);
    expect(second.execution!.createTime).toEqual(first.execution!.createTime);
    expect(second.execution!.etag).not.toBe(first.execution!.etag);
  });

  it("sets completed_at when a terminal status is saved without one, and keeps it on re-saves", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const done = await client.saveWorkflowExecution({
      execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.COMPLETED },
    });
    expect(done.execution!.completedAt).toBeDefined();
    const again = await client.saveWorkflowExecution({
      execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.COMPLETED, errorMessage: "x" },
    });
    expect(again.execution!.completedAt).toEqual(done.execution!.completedAt);
    // Resumed (FAILED -> RUNNING style): an incomplete status clears it.
    const resumed = await client.saveWorkflowExecution({
      execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING },
    });
    expect(resumed.execution!.completedAt).toBeUndefined();
  });

  it("GetWorkflowExecution of an unknown id answers NOT_FOUND", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const err = await client.getWorkflowExecution({ executionId: "nope" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
  });
});

describe(`optimistic concurrency on ${backendName}`, () => {
  it("a save with the current etag succeeds and returns a new etag", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const v1 = await client.saveWorkflowExecution({ execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.PENDING } });
    const v2 = await client.saveWorkflowExecution({
      etag: v1.execution!.etag,
      execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING },
    });
    expect(v2.execution!.status).toBe(WorkflowStatus.RUNNING);
    expect(v2.execution!.etag).not.toBe(v1.execution!.etag);
  });

  it("a save with an etag stores the JSON columns as JSON values, as a save without one does", async () => {
    // Not as JSON text inside a JSON string: SQL over the columns and the
    // stored sizes of the byte budgets read what is stored.
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    const execution = { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING, context: { a: 1 }, labels: { team: "x" } };
    const stored = async () =>
      (
        await t.knex.raw<{ rows: Record<string, string>[] }>(
          `SELECT jsonb_typeof(context) AS context, jsonb_typeof(step_executions) AS step_executions,
                  jsonb_typeof(step_outputs) AS step_outputs, jsonb_typeof(labels) AS labels
           FROM workflow_executions WHERE tenant_id = ? AND execution_id = 'e'`,
          [tenant],
        )
      ).rows[0];
    const v1 = await client.saveWorkflowExecution({ execution });
    const types = { context: "object", step_executions: "array", step_outputs: "object", labels: "object" };
    expect(await stored()).toEqual(types);
    await client.saveWorkflowExecution({ etag: v1.execution!.etag, execution: { ...execution, context: { a: 2 } } });
    expect(await stored()).toEqual(types);
    expect((await client.getWorkflowExecution({ executionId: "e" })).execution!.context).toEqual({ a: 2 });
  });

  it("SaveWorkflowExecution with a stale etag answers ABORTED and changes nothing", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const v1 = await client.saveWorkflowExecution({ execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.PENDING } });
    const v2 = await client.saveWorkflowExecution({ execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING } });
    const err = await client
      .saveWorkflowExecution({ etag: v1.execution!.etag, execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.FAILED } })
      .catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Aborted);
    const stored = await client.getWorkflowExecution({ executionId: "e" });
    expect(stored.execution).toEqual(v2.execution);
  });

  it("an etag for an execution that does not exist answers ABORTED and creates nothing", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    for (const etag of ["1", "not-an-etag"]) {
      const err = await client
        .saveWorkflowExecution({ etag, execution: { executionId: "ghost", workflowName: "w", status: WorkflowStatus.PENDING } })
        .catch((e: unknown) => e);
      expect(ConnectError.from(err).code).toBe(Code.Aborted);
    }
    const err = await client.getWorkflowExecution({ executionId: "ghost" }).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.NotFound);
  });

  it("two concurrent saves with the same etag: exactly one wins, the other is ABORTED", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    for (let round = 0; round < 5; round++) {
      const id = `race-${round}`;
      const v1 = await client.saveWorkflowExecution({ execution: { executionId: id, workflowName: "w", status: WorkflowStatus.PENDING } });
      const attempt = (errorMessage: string) =>
        client.saveWorkflowExecution({
          etag: v1.execution!.etag,
          execution: { executionId: id, workflowName: "w", status: WorkflowStatus.RUNNING, errorMessage },
        });
      const results = await Promise.allSettled([attempt("a"), attempt("b")]);
      const won = results.filter((r) => r.status === "fulfilled");
      const lost = results.filter((r) => r.status === "rejected");
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      expect(ConnectError.from((lost[0] as PromiseRejectedResult).reason).code).toBe(Code.Aborted);
      const stored = await client.getWorkflowExecution({ executionId: id });
      expect(stored.execution).toEqual((won[0] as PromiseFulfilledResult<{ execution: WorkflowExecution }>).value.execution);
    }
  });
});

describe(`bad input on ${backendName}`, () => {
  const valid = { executionId: "ok", workflowName: "w", status: WorkflowStatus.RUNNING };
  const cases: [string, Record<string, unknown>, string][] = [
    ["missing execution_id", { ...valid, executionId: "" }, "execution.execution_id"],
    ["execution_id over 100 characters", { ...valid, executionId: "x".repeat(101) }, "execution.execution_id"],
    ["NUL byte in execution_id", { ...valid, executionId: "a\0b" }, "execution.execution_id"],
    ["workflow_name over 200 characters", { ...valid, workflowName: "n".repeat(201) }, "execution.workflow_name"],
    ["unspecified status", { ...valid, status: WorkflowStatus.UNSPECIFIED }, "execution.status"],
    ["unknown status number", { ...valid, status: 99 }, "execution.status"],
    ["completed_at on a running execution", { ...valid, completedAt: { seconds: 1n } }, "execution.completed_at"],
    ["timestamp out of range", { ...valid, startedAt: { seconds: 253_402_300_800n } }, "execution.started_at"],
    ["NUL byte in a label value", { ...valid, labels: { a: "x\0" } }, 'execution.labels["a"]'],
    ["NUL byte inside the context", { ...valid, context: { deep: { s: "a\0" } } }, "execution.context"],
    ["a step execution without status", { ...valid, stepExecutions: [{ stepId: "s" }] }, "execution.step_executions[0].status"],
    ["a negative step timeout", { ...valid, definition: { steps: [{ stepId: "s", timeout: { seconds: -1n } }] } }, "execution.definition.steps[0].timeout"],
    ["duplicate step ids", { ...valid, definition: { steps: [{ stepId: "s" }, { stepId: "s" }] } }, "execution.definition.steps[1].step_id"],
  ];

  it.each(cases)("%s answers INVALID_ARGUMENT naming the field and writes nothing", async (_name, execution, field) => {
    const client = workflowClient(t.baseUrl, newTenant());
    const err = ConnectError.from(
      await client.saveWorkflowExecution({ execution: execution as never }).catch((e: unknown) => e),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(field);
    const detail = err.findDetails(BadRequestSchema)[0];
    expect(detail?.fieldViolations.map((v) => v.field)).toContain(field);
    const id = (execution as { executionId: string }).executionId;
    if (id.length > 0 && id.length <= 100 && !id.includes("\0")) {
      const get = await client.getWorkflowExecution({ executionId: id }).catch((e: unknown) => e);
      expect(ConnectError.from(get).code).toBe(Code.NotFound);
    }
  });

  it("a Struct nested deeper than 32 levels answers INVALID_ARGUMENT", async () => {
    let context: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 40; i++) context = { child: context };
    const client = workflowClient(t.baseUrl, newTenant());
    const err = ConnectError.from(
      await client.saveWorkflowExecution({ execution: { ...valid, context: context as never } }).catch((e: unknown) => e),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("execution.context");
  });

  it("a missing execution answers INVALID_ARGUMENT naming it", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const err = ConnectError.from(await client.saveWorkflowExecution({}).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("execution");
  });
});
