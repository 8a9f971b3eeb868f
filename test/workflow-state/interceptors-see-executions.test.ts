import { type JsonValue, type Message, toJson } from "@bufbuild/protobuf";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type WorkflowExecution,
  WorkflowExecutionSchema,
  WorkflowStateService,
  WorkflowStatus,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { executionsBuilt } from "../../src/services/workflow-state/encoding/index.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";
import type { Tracing } from "../../src/tracing/tracing.js";
import { backendName } from "../support/backend.js";
import { PROTOCOL_CODECS, workflowClient } from "../support/clients.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Handlers of WorkflowStateService answer with real messages: an interceptor
// of the server's chain that reads an answer's execution sees it, on every
// protocol and codec, unary and streaming (the encoding for binary clients
// happens after every interceptor, src/services/workflow-state/encoding/). And
// an answer nobody reads is written to binary clients without building its
// message (the fast path of that encoding), which the count of built
// executions pins.

const LEASE = { seconds: 60n, nanos: 0 };

/** The executions of an answer, as an interceptor reads them. */
function executionsOf(message: Message): WorkflowExecution[] {
  const m = message as unknown as { execution?: WorkflowExecution; executions?: WorkflowExecution[] };
  return m.executions ?? (m.execution === undefined ? [] : [m.execution]);
}

/** What an interceptor read of each answer: its method, and the JSON of each execution (undefined: none). */
interface Seen {
  method: string;
  executions: (JsonValue | undefined)[];
}

/** An interceptor that reads the execution(s) of every answer, unary or streamed, as it passes. */
function reader(seen: Seen[]): Interceptor {
  const read = (method: string, message: Message) =>
    seen.push({ method, executions: executionsOf(message).map((e) => (e === undefined ? undefined : toJson(WorkflowExecutionSchema, e))) });
  return (next) => async (req) => {
    const res = await next(req);
    if (!res.stream) {
      read(req.method.name, res.message);
      return res;
    }
    return {
      ...res,
      message: (async function* () {
        for await (const m of res.message) {
          read(req.method.name, m);
          yield m;
        }
      })(),
    };
  };
}

/** The server's tracing slot (an interceptor of every service's chain) taken by `interceptor`. */
const tracingWith = (interceptor: Interceptor): Tracing => ({ interceptor, inSpan: (_name, work) => work(), shutdown: async () => {} });

const CASES = PROTOCOL_CODECS;

/** Saves two incomplete executions, then gets, lists, streams and claims them; returns every execution the client received, by method. */
async function everyAnswer(client: ReturnType<typeof workflowClient>): Promise<Map<string, WorkflowExecution[]>> {
  const got = new Map<string, WorkflowExecution[]>();
  const add = (method: string, e: WorkflowExecution | undefined) => got.set(method, [...(got.get(method) ?? []), ...(e === undefined ? [] : [e])]);
  for (const id of ["a", "b"]) {
    const saved = await client.saveWorkflowExecution({
      execution: {
        executionId: id,
        workflowName: "w",
        status: WorkflowStatus.RUNNING,
        context: { order: { items: [1, "two", null] }, "ключ": "😀" },
        labels: { team: "fulfilment" },
        startedAt: { seconds: 1_790_000_000n + (id === "a" ? 0n : 1n) },
      },
    });
    add("SaveWorkflowExecution", saved.execution);
  }
  add("GetWorkflowExecution", (await client.getWorkflowExecution({ executionId: "a" })).execution);
  for (const e of (await client.listWorkflowExecutions({ pageSize: 10 })).executions) add("ListWorkflowExecutions", e);
  for await (const m of client.streamIncompleteWorkflows({})) add("StreamIncompleteWorkflows", m.execution);
  for await (const m of client.claimIncompleteWorkflows({ owner: "o", leaseDuration: LEASE })) add("ClaimIncompleteWorkflows", m.execution);
  return got;
}

describe(`an interceptor reading WorkflowStateService's answers on ${backendName}`, () => {
  let t: TestServer;
  const seen: Seen[] = [];
  beforeAll(async () => {
    t = await startTestServer({}, undefined, undefined, { tracing: tracingWith(reader(seen)) });
  });
  afterAll(async () => {
    await t.close();
  });

  it.each(CASES)("sees the execution the client gets, over %s in %s", async (protocol, _codec, useBinaryFormat) => {
    seen.length = 0;
    const got = await everyAnswer(workflowClient(t.baseUrl, newTenant(), protocol, useBinaryFormat));
    for (const [method, executions] of got) {
      const read = seen.filter((s) => s.method === method).flatMap((s) => s.executions);
      expect(read, method).toEqual(executions.map((e) => toJson(WorkflowExecutionSchema, e)));
    }
    expect([...got.keys()].sort()).toEqual([
      "ClaimIncompleteWorkflows",
      "GetWorkflowExecution",
      "ListWorkflowExecutions",
      "SaveWorkflowExecution",
      "StreamIncompleteWorkflows",
    ]);
    // Two saved, one got, two listed, two streamed, two claimed: none empty.
    expect([...got.values()].map((e) => e.length)).toEqual([2, 1, 2, 2, 2]);
    expect(got.get("ClaimIncompleteWorkflows")!.every((e) => e.lease?.owner === "o")).toBe(true);
  });
});

describe(`answers to binary clients on ${backendName}`, () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t.close();
  });

  it.each(CASES)("build an execution message only for JSON codecs, over %s in %s", async (protocol, _codec, useBinaryFormat) => {
    const client = workflowClient(t.baseUrl, newTenant(), protocol, useBinaryFormat);
    const fastPathBefore = t.server.stats().grpcFastPathCalls;
    const before = executionsBuilt();
    const got = await everyAnswer(client);
    const received = [...got.values()].flat().length;
    expect(received).toBe(9);
    expect(executionsBuilt() - before).toBe(useBinaryFormat ? 0 : received);
    // Unary gRPC in binary is the fast path's: 2 saves, a get and a list.
    expect(t.server.stats().grpcFastPathCalls - fastPathBefore).toBe(protocol === "grpc" && useBinaryFormat ? 4 : 0);
  });
  it("answer Connect's GET requests (no Content-Type) in binary with the messages built, as for any codec not known", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant, "connect", true);
    const saved = await client.saveWorkflowExecution({ execution: { executionId: "g", workflowName: "w", status: WorkflowStatus.RUNNING, context: { k: [1, "x"] } } });
    const transport = createConnectTransport({
      baseUrl: t.baseUrl,
      httpVersion: "2",
      useBinaryFormat: true,
      useHttpGet: true,
      interceptors: [
        (next) => (req) => {
          req.header.set(TENANT_HEADER, tenant);
          return next(req);
        },
      ],
    });
    const before = executionsBuilt();
    const got = await createClient(WorkflowStateService, transport).getWorkflowExecution({ executionId: "g" });
    expect(got.execution).toEqual(saved.execution);
    expect(executionsBuilt() - before).toBe(1);
  });
});
