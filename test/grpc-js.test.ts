import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName } from "./support/backend.js";
import { grpcJsPackage, tenantMetadata, workflowClient } from "./support/clients.js";
import { newTenant, startTestServer, type TestServer } from "./support/server.js";

// Wire compatibility with an independent client: @grpc/grpc-js, with the
// service loaded at run time from proto/ by @grpc/proto-loader (keepCase,
// enums and 64-bit integers as strings), sharing no generated code with the server.

type Obj = Record<string, unknown>;
type UnaryMethod = (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: Obj) => void) => grpc.ClientUnaryCall;
type StreamMethod = (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<Obj>;

let t: TestServer;
let client: grpc.Client & Record<string, UnaryMethod | StreamMethod>;
beforeAll(async () => {
  t = await startTestServer({ streamBatchSize: 4 });
  const pkg = grpcJsPackage();
  const v1 = ((pkg.orchestration as grpc.GrpcObject).state as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const Ctor = v1.WorkflowStateService as grpc.ServiceClientConstructor;
  client = new Ctor(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure()) as typeof client;
});
afterAll(async () => {
  client?.close();
  await t.close();
});

/** A unary call through grpc-js, as a promise. */
function call(method: string, req: object, md: grpc.Metadata): Promise<Obj> {
  return new Promise((resolve, reject) => {
    (client[method] as UnaryMethod).call(client, req, md, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** The grpc-js error of a call that must fail. */
async function errorOf(call: Promise<unknown>): Promise<grpc.ServiceError> {
  const err = await call.then(
    () => new Error("the call succeeded, but an error was expected"),
    (e: unknown) => e,
  );
  expect(err).toHaveProperty("code");
  return err as grpc.ServiceError;
}

/** Reads a whole server stream through grpc-js: its messages and final status. */
function readStream(method: string, req: object, md: grpc.Metadata): Promise<{ messages: Obj[]; status: grpc.StatusObject }> {
  return new Promise((resolve, reject) => {
    const messages: Obj[] = [];
    const stream = (client[method] as StreamMethod).call(client, req, md);
    stream.on("data", (m: Obj) => messages.push(m));
    stream.on("error", reject);
    stream.on("status", (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve({ messages, status });
    });
  });
}

// A Value in proto-loader's object form. proto-loader takes google/protobuf/struct.proto
// from protobufjs's bundled copy, whose field names are camelCase even with keepCase.
const num = (n: number) => ({ numberValue: n, kind: "numberValue" });
const str = (s: string) => ({ stringValue: s, kind: "stringValue" });
const bool = (b: boolean) => ({ boolValue: b, kind: "boolValue" });
const nul = () => ({ nullValue: "NULL_VALUE", kind: "nullValue" });
const struct = (fields: Obj) => ({ fields });
const obj = (fields: Obj) => ({ structValue: struct(fields), kind: "structValue" });
const list = (...values: Obj[]) => ({ listValue: { values }, kind: "listValue" });

/** An execution setting every field, in grpc-js form; timestamps at microsecond precision. */
function fullExecution(id: string): Obj {
  return {
    execution_id: id,
    workflow_name: "fulfil-order",
    status: "WORKFLOW_STATUS_FAILED",
    definition: {
      name: "fulfil-order",
      version: "1.4.0",
      steps: [
        {
          step_id: "fetch",
          name: "Fetch the order",
          required_capability: "erp-read",
          task_type: "lookup",
          depends_on: [],
          parameters: struct({ source: str("erp"), retries: num(2) }),
          timeout: { seconds: "30", nanos: 500_000_000 },
          retry_policy: { max_attempts: 3, initial_backoff: { seconds: "1", nanos: 0 }, max_backoff: { seconds: "10", nanos: 0 }, backoff_multiplier: 2.5 },
        },
        { step_id: "ship", name: "Ship it", depends_on: ["fetch"], task_type: "act" },
      ],
    },
    context: struct({
      orderId: num(42),
      customer: obj({ name: str("Ada"), vip: bool(true) }),
      items: list(str("a"), num(1.5), nul()),
      note: nul(),
    }),
    step_executions: [
      {
        step_id: "fetch",
        status: "WORKFLOW_STATUS_COMPLETED",
        agent_key: "agent-7",
        attempt: 2,
        started_at: { seconds: "1790000000", nanos: 123_456_000 },
        completed_at: { seconds: "1790000010", nanos: 1_000 },
      },
      { step_id: "ship", status: "WORKFLOW_STATUS_FAILED", agent_key: "agent-9", attempt: 1, error_message: "carrier down" },
    ],
    step_outputs: {
      fetch: obj({ items: num(3) }),
      ship: nul(),
    },
    error_message: "step ship failed: carrier down",
    started_at: { seconds: "1790000000", nanos: 654_321_000 },
    completed_at: { seconds: "1790000020", nanos: 999_999_000 },
    initiated_by: "user:ada@example.com",
    labels: { team: "fulfilment", region: "eu-west" },
  };
}

/** Saves minimal executions for `tenant` through grpc-js. */
async function saveAll(tenant: string, executions: [id: string, status: string, startedSeconds: number][]) {
  for (const [execution_id, status, seconds] of executions) {
    await call(
      "SaveWorkflowExecution",
      { execution: { execution_id, workflow_name: "w", status, started_at: { seconds: String(1_790_000_000 + seconds), nanos: 0 } } },
      tenantMetadata(tenant),
    );
  }
}

describe(`@grpc/grpc-js client on ${backendName}`, () => {
  it("saves an execution with every field and reads it back unchanged", async () => {
    const tenant = newTenant();
    const sent = fullExecution("grpc-js-full");
    const saved = (await call("SaveWorkflowExecution", { execution: sent }, tenantMetadata(tenant))).execution as Obj;
    expect(saved).toMatchObject(sent);
    expect(saved.etag).not.toBe("");
    expect(saved.create_time).toMatchObject({ seconds: expect.stringMatching(/^\d+$/) });
    expect(saved.update_time).toEqual(saved.create_time);

    const got = (await call("GetWorkflowExecution", { execution_id: "grpc-js-full" }, tenantMetadata(tenant))).execution;
    expect(got).toEqual(saved);

    // The generated (Connect) client reads the same values.
    const connect = (await workflowClient(t.baseUrl, tenant).getWorkflowExecution({ executionId: "grpc-js-full" })).execution!;
    expect(connect.status).toBe(WorkflowStatus.FAILED);
    expect(connect.context).toEqual({ orderId: 42, customer: { name: "Ada", vip: true }, items: ["a", 1.5, null], note: null });
    expect(connect.startedAt).toMatchObject({ seconds: 1_790_000_000n, nanos: 654_321_000 });
    expect(connect.definition?.steps[0]?.retryPolicy).toMatchObject({ maxAttempts: 3, backoffMultiplier: 2.5 });
    expect(connect.definition?.steps[0]?.timeout).toMatchObject({ seconds: 30n, nanos: 500_000_000 });
    expect(connect.labels).toEqual({ team: "fulfilment", region: "eu-west" });
    expect(connect.stepOutputs.ship?.kind.case).toBe("nullValue");
    expect(connect.etag).toBe(saved.etag);
  });

  it("an execution saved by the Connect client reads the same through grpc-js", async () => {
    const tenant = newTenant();
    await workflowClient(t.baseUrl, tenant).saveWorkflowExecution({
      execution: {
        executionId: "from-connect",
        workflowName: "w",
        status: WorkflowStatus.BLOCKED,
        startedAt: { seconds: 1_790_000_000n, nanos: 7_000 },
        context: { n: 1, s: "x" },
        labels: { a: "b" },
      },
    });
    const got = (await call("GetWorkflowExecution", { execution_id: "from-connect" }, tenantMetadata(tenant))).execution;
    expect(got).toMatchObject({
      execution_id: "from-connect",
      status: "WORKFLOW_STATUS_BLOCKED",
      started_at: { seconds: "1790000000", nanos: 7_000 },
      context: { fields: { n: num(1), s: str("x") } },
      labels: { a: "b" },
      error_message: "",
      step_executions: [],
    });
  });

  it("GetWorkflowExecution of an unknown id fails with NOT_FOUND", async () => {
    const err = await errorOf(call("GetWorkflowExecution", { execution_id: "nope" }, tenantMetadata(newTenant())));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toContain("nope");
  });

  it("a call without x-tenant-id, or with a malformed one, fails with INVALID_ARGUMENT naming the header", async () => {
    const malformed = new grpc.Metadata();
    malformed.set("x-tenant-id", "not-a-uuid");
    for (const md of [new grpc.Metadata(), malformed]) {
      const err = await errorOf(call("GetWorkflowExecution", { execution_id: "e" }, md));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toContain("x-tenant-id");
    }
    // Nothing is written without a tenant either.
    const save = await errorOf(call("SaveWorkflowExecution", { execution: fullExecution("no-tenant") }, new grpc.Metadata()));
    expect(save.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("a save with a stale etag fails with ABORTED and changes nothing", async () => {
    const tenant = newTenant();
    const md = () => tenantMetadata(tenant);
    const base = { execution_id: "e", workflow_name: "w" };
    const v1 = (await call("SaveWorkflowExecution", { execution: { ...base, status: "WORKFLOW_STATUS_PENDING" } }, md())).execution as Obj;
    const v2 = (await call("SaveWorkflowExecution", { execution: { ...base, status: "WORKFLOW_STATUS_RUNNING" }, etag: v1.etag }, md())).execution as Obj;
    expect(v2.etag).not.toBe(v1.etag);
    const err = await errorOf(call("SaveWorkflowExecution", { execution: { ...base, status: "WORKFLOW_STATUS_FAILED" }, etag: v1.etag }, md()));
    expect(err.code).toBe(grpc.status.ABORTED);
    expect((await call("GetWorkflowExecution", { execution_id: "e" }, md())).execution).toEqual(v2);
  });

  it("a bad request fails with INVALID_ARGUMENT naming the field", async () => {
    const err = await errorOf(
      call("SaveWorkflowExecution", { execution: { execution_id: "e", workflow_name: "w", status: "WORKFLOW_STATUS_UNSPECIFIED" } }, tenantMetadata(newTenant())),
    );
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toContain("execution.status");
  });

  it("StreamIncompleteWorkflows read by grpc-js sends the incomplete executions oldest first, over several batches", async () => {
    const tenant = newTenant();
    await saveAll(tenant, [
      ["k", "WORKFLOW_STATUS_RUNNING", 50],
      ["done", "WORKFLOW_STATUS_COMPLETED", 1],
      ["b", "WORKFLOW_STATUS_PENDING", 20],
      ["a", "WORKFLOW_STATUS_BLOCKED", 20],
      ["z", "WORKFLOW_STATUS_RUNNING", 10],
      ["failed", "WORKFLOW_STATUS_FAILED", 15],
      ["m", "WORKFLOW_STATUS_PENDING", 30],
      ["c", "WORKFLOW_STATUS_CANCELLED", 40],
      ["y", "WORKFLOW_STATUS_RUNNING", 5],
      ["x", "WORKFLOW_STATUS_BLOCKED", 60],
    ]);
    const { messages, status } = await readStream("StreamIncompleteWorkflows", {}, tenantMetadata(tenant));
    expect(status.code).toBe(grpc.status.OK);
    const executions = messages.map((m) => m.execution as Obj);
    expect(executions.map((e) => e.execution_id)).toEqual(["y", "z", "a", "b", "m", "k", "x"]);
    expect(executions.map((e) => e.status)).toEqual([
      "WORKFLOW_STATUS_RUNNING",
      "WORKFLOW_STATUS_RUNNING",
      "WORKFLOW_STATUS_BLOCKED",
      "WORKFLOW_STATUS_PENDING",
      "WORKFLOW_STATUS_PENDING",
      "WORKFLOW_STATUS_RUNNING",
      "WORKFLOW_STATUS_BLOCKED",
    ]);
    const empty = await readStream("StreamIncompleteWorkflows", {}, tenantMetadata(newTenant()));
    expect(empty.messages).toEqual([]);
  });

  it("StreamIncompleteWorkflows without a tenant ends with INVALID_ARGUMENT", async () => {
    const err = await errorOf(readStream("StreamIncompleteWorkflows", {}, new grpc.Metadata()));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("a stream cancelled by grpc-js ends with CANCELLED, and the server keeps answering", async () => {
    const tenant = newTenant();
    // Far more than fit in the HTTP/2 windows, so the stream is still running when cancelled.
    const rows = Array.from({ length: 2_000 }, (_, i) => ({
      tenant_id: tenant,
      execution_id: `e${String(i).padStart(4, "0")}`,
      workflow_name: "w",
      status: "RUNNING",
      started_at: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
    }));
    for (let i = 0; i < rows.length; i += 500) await t.knex("workflow_executions").insert(rows.slice(i, i + 500));
    const stream = (client.StreamIncompleteWorkflows as StreamMethod).call(client, {}, tenantMetadata(tenant));
    const first = await new Promise<Obj>((resolve) => stream.once("data", resolve));
    expect((first.execution as Obj).execution_id).toBe("e0000");
    const ended = new Promise<grpc.ServiceError>((resolve) => stream.on("error", resolve));
    stream.cancel();
    expect((await ended).code).toBe(grpc.status.CANCELLED);
    expect((await call("GetWorkflowExecution", { execution_id: "e1999" }, tenantMetadata(tenant))).execution).toMatchObject({ execution_id: "e1999" });
  });

  it("ListWorkflowExecutions pages through grpc-js, newest first, with an empty next_page_token at the end", async () => {
    const tenant = newTenant();
    const saves = Array.from({ length: 25 }, (_, i): [string, string, number] => [`e${String(i).padStart(2, "0")}`, i % 2 ? "WORKFLOW_STATUS_RUNNING" : "WORKFLOW_STATUS_COMPLETED", Math.floor(i / 3)]);
    await saveAll(tenant, saves);
    const expected = [...saves].sort((a, b) => b[2] - a[2] || (a[0] < b[0] ? 1 : -1)).map((s) => s[0]);

    const got: string[] = [];
    const sizes: number[] = [];
    let page_token = "";
    for (let pages = 0; pages < 10; pages++) {
      const res = await call("ListWorkflowExecutions", { page_size: 10, page_token }, tenantMetadata(tenant));
      const executions = res.executions as Obj[];
      got.push(...executions.map((e) => e.execution_id as string));
      sizes.push(executions.length);
      page_token = res.next_page_token as string;
      if (page_token === "") break;
    }
    expect(page_token).toBe("");
    expect(sizes).toEqual([10, 10, 5]);
    expect(got).toEqual(expected);

    // Filters travel as grpc-js encodes them: enum names and Timestamps with string seconds.
    const filtered = await call(
      "ListWorkflowExecutions",
      { statuses: ["WORKFLOW_STATUS_RUNNING"], started_after: { seconds: "1790000003", nanos: 0 }, started_before: { seconds: "1790000006", nanos: 0 } },
      tenantMetadata(tenant),
    );
    const match = saves.filter(([, status, s]) => status === "WORKFLOW_STATUS_RUNNING" && s >= 3 && s < 6).map((s) => s[0]);
    expect((filtered.executions as Obj[]).map((e) => e.execution_id)).toEqual(expected.filter((id) => match.includes(id)));

    const err = await errorOf(call("ListWorkflowExecutions", { page_token: "garbage" }, tenantMetadata(tenant)));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toContain("page_token");
  });

  it("DeleteWorkflowExecutions returns its int64 count, which grpc-js reads as a string", async () => {
    const tenant = newTenant();
    const md = () => tenantMetadata(tenant);
    for (const [execution_id, status] of [["a", "WORKFLOW_STATUS_COMPLETED"], ["b", "WORKFLOW_STATUS_FAILED"], ["c", "WORKFLOW_STATUS_CANCELLED"], ["d", "WORKFLOW_STATUS_RUNNING"]]) {
      await call("SaveWorkflowExecution", { execution: { execution_id, workflow_name: "w", status, started_at: { seconds: "1000", nanos: 0 }, ...(status === "WORKFLOW_STATUS_RUNNING" ? {} : { completed_at: { seconds: "2000", nanos: 0 } }) } }, md());
    }
    const res = await call("DeleteWorkflowExecutions", { completed_before: { seconds: "3000", nanos: 0 }, statuses: ["WORKFLOW_STATUS_COMPLETED", "WORKFLOW_STATUS_FAILED"] }, md());
    expect(res.deleted_count).toBe("2");
    const err = await errorOf(call("DeleteWorkflowExecutions", { completed_before: { seconds: "3000", nanos: 0 }, statuses: ["WORKFLOW_STATUS_RUNNING"] }, md()));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    const left = await call("ListWorkflowExecutions", {}, md());
    expect((left.executions as Obj[]).map((e) => e.execution_id).sort()).toEqual(["c", "d"]);
  });
});
