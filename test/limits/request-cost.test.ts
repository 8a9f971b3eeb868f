// What a request can cost is bounded before the work starts: a request of an
// RPC that stores nothing is at most 128 KiB (RESOURCE_EXHAUSTED before it is
// decoded), repeated filters have a maximum number of entries, and validation
// stops once it has found the 20 violations it reports (and one more). Before,
// a 4 MiB request of packed invalid enum values was decoded (about 0.1 s),
// then got one violation per entry (seconds of CPU, about 750 MB), in front
// of every other tenant's calls.
import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService, CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { connectClient, type Protocol, workflowClient } from "../support/clients.js";
import { errorOf } from "../support/errors.js";
import { envelope, wireCall } from "../support/grpc-wire.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

const KiB = 1024;

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

/** A ListWorkflowExecutionsRequest whose `statuses` (field 4) packs `count` copies of `value`, as protobuf bytes. */
function packedStatuses(count: number, value: number): Uint8Array {
  const length: number[] = [];
  for (let n = count; ; n >>>= 7) {
    if (n < 0x80) {
      length.push(n);
      break;
    }
    length.push((n & 0x7f) | 0x80);
  }
  const bytes = new Uint8Array(1 + length.length + count);
  bytes[0] = (4 << 3) | 2;
  bytes.set(length, 1);
  bytes.fill(value, 1 + length.length);
  return bytes;
}

describe("the request size of RPCs that store nothing", () => {
  it.each<Protocol>(["grpc", "grpc-web", "connect"])(
    "over %s, a ListWorkflowExecutions request above 128 KiB answers RESOURCE_EXHAUSTED; a SaveWorkflowExecution of 1 MiB is served",
    async (protocol) => {
      const client = workflowClient(t.baseUrl, newTenant(), protocol);
      const statuses = new Array<WorkflowStatus>(129 * KiB).fill(WorkflowStatus.RUNNING);
      expect((await errorOf(client.listWorkflowExecutions({ statuses }))).code).toBe(Code.ResourceExhausted);
      const save = await client.saveWorkflowExecution({
        execution: { executionId: "big", workflowName: "w", status: WorkflowStatus.RUNNING, context: { blob: "x".repeat(1024 * KiB) } },
      });
      expect(save.execution?.executionId).toBe("big");
    },
  );

  it("a 4 MiB request of packed invalid statuses is refused by its size alone, before it is decoded", async () => {
    const session = http2.connect(t.baseUrl);
    try {
      const answer = await wireCall(session, {
        path: "/orchestration.state.v1.WorkflowStateService/ListWorkflowExecutions",
        headers: { "x-tenant-id": newTenant() },
        body: envelope(packedStatuses(4 * 1024 * KiB - 16, 99)),
      });
      expect(answer.trailers["grpc-status"] ?? answer.headers["grpc-status"]).toBe(String(Code.ResourceExhausted));
      expect(decodeURIComponent(answer.trailers["grpc-message"] ?? answer.headers["grpc-message"] ?? "")).toMatch(/larger than configured readMaxBytes 131072/);
    } finally {
      session.close();
    }
  });
});

describe("repeated filters", () => {
  it("ListWorkflowExecutions and DeleteWorkflowExecutions take at most 10 statuses, ListCircuitBreakerStates at most 10 states", async () => {
    const tenant = newTenant();
    const workflows = workflowClient(t.baseUrl, tenant);
    const breakers = connectClient(CircuitBreakerService, t.baseUrl, tenant);
    const running = new Array<WorkflowStatus>(11).fill(WorkflowStatus.RUNNING);
    const completed = new Array<WorkflowStatus>(11).fill(WorkflowStatus.COMPLETED);
    const open = new Array<CircuitState>(11).fill(CircuitState.OPEN);
    for (const call of [
      workflows.listWorkflowExecutions({ statuses: running }),
      workflows.deleteWorkflowExecutions({ completedBefore: { seconds: 1n }, statuses: completed }),
      breakers.listCircuitBreakerStates({ states: open }),
    ]) {
      const err = await errorOf(call);
      expect([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, expect.stringMatching(/^(statuses|states): must have at most 10 entries, got 11$/)]);
    }
    // Ten are fine, duplicates included.
    expect((await workflows.listWorkflowExecutions({ statuses: running.slice(1) })).executions).toEqual([]);
    expect((await breakers.listCircuitBreakerStates({ states: open.slice(1) })).circuitBreakers).toEqual([]);
  });

  it("a filter of 100,000 unknown values within the size limit is refused for its length, after looking at ten of them", async () => {
    const session = http2.connect(t.baseUrl);
    try {
      const answer = await wireCall(session, {
        path: "/orchestration.state.v1.WorkflowStateService/ListWorkflowExecutions",
        headers: { "x-tenant-id": newTenant() },
        body: envelope(packedStatuses(100_000, 99)),
      });
      const err = new ConnectError(decodeURIComponent(answer.trailers["grpc-message"] ?? ""), Number(answer.trailers["grpc-status"]) as Code);
      expect(err.code).toBe(Code.InvalidArgument);
      const named = err.rawMessage.split("; ");
      expect(named[0]).toBe("statuses: must have at most 10 entries, got 100000");
      expect(named.slice(1)).toEqual(Array.from({ length: 10 }, (_, i) => `statuses[${i}]: unknown value 99`));
    } finally {
      session.close();
    }
  });
});
