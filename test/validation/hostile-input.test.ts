import { createHash } from "node:crypto";
import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { invalidArgument } from "../../src/errors/invalid-argument.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";
import { backendName } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { decision } from "../support/decisions.js";
import { violatedFields } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Hostile input that the property tests found or that they cannot generate
// (forged page tokens need the fingerprint), pinned as examples.

async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

/** A page token as the server would issue it, with any keyset: tokens are not signed. */
function forgedToken(tenant: string, key: string[], filters: unknown): string {
  const f = createHash("sha256").update(JSON.stringify([tenant, filters])).digest("base64url").slice(0, 16);
  return Buffer.from(JSON.stringify({ k: key, f })).toString("base64url");
}

describe(`hostile input (${backendName})`, () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  describe("forged page tokens answer INVALID_ARGUMENT naming page_token, never reach SQL", () => {
    const routingFilters = {
      taskId: "", taskType: "", selectedAgent: "", workflowExecutionId: "", stepId: "",
      success: null, routedAfter: null, routedBefore: null,
    };
    const workflowFilters = { workflowName: "", statuses: [], startedAfter: null, startedBefore: null };
    const cases: [string, (t: string) => Promise<unknown>][] = [
      ["a transition id beyond int8", (t) => connectClient(CircuitBreakerService, server.baseUrl, t).listCircuitBreakerTransitions({
        agentKey: "a", pageToken: forgedToken(t, ["9999999999999999999"], { agentKey: "a" }) })],
      ["a NUL in a breaker's agent key", (t) => connectClient(CircuitBreakerService, server.baseUrl, t).listCircuitBreakerStates({
        pageToken: forgedToken(t, ["a\u0000"], { states: [] }) })],
      ["a NUL in a statistics agent key", (t) => connectClient(StatisticsService, server.baseUrl, t).listAgentStatistics({
        pageToken: forgedToken(t, ["a\u0000"], {}) })],
      ["a decision id that is no UUID", (t) => connectClient(RoutingAuditService, server.baseUrl, t).listRoutingDecisions({
        pageToken: forgedToken(t, ["2026-01-01 00:00:00+00", "x"], routingFilters) })],
      ["year 99999 in an execution's start", (t) => connectClient(WorkflowStateService, server.baseUrl, t).listWorkflowExecutions({
        pageToken: forgedToken(t, ["99999-01-01 00:00:00+00", "x"], workflowFilters) })],
      ["a NUL in an execution id", (t) => connectClient(WorkflowStateService, server.baseUrl, t).listWorkflowExecutions({
        pageToken: forgedToken(t, ["2026-01-01 00:00:00+00", "x\u0000"], workflowFilters) })],
    ];
    for (const [name, call] of cases) {
      it(name, async () => {
        const err = await rejection(call(newTenant()));
        expect([err.code, err.rawMessage]).toEqual([Code.InvalidArgument, "page_token: is not a token this service issued"]);
      });
    }
  });

  it("a forged token with month 13 moves only its own cursor: the page answers, PostgreSQL never sees the text", async () => {
    const t = newTenant();
    const res = await connectClient(RoutingAuditService, server.baseUrl, t).listRoutingDecisions({
      pageToken: forgedToken(t, ["2026-13-01 00:00:00+00", "7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10"], {
        taskId: "", taskType: "", selectedAgent: "", workflowExecutionId: "", stepId: "",
        success: null, routedAfter: null, routedBefore: null,
      }),
    });
    expect(res.decisions).toEqual([]);
  });

  it("a batch with thousands of bad fields answers INVALID_ARGUMENT over gRPC, naming the first 20 and saying there are more", async () => {
    const client = connectClient(RoutingAuditService, server.baseUrl, newTenant(), "grpc");
    const decisions = Array.from({ length: 1_000 }, () => decision({ taskId: "", selectedAgent: "x".repeat(201) }));
    const err = await rejection(client.recordRoutingDecisions({ decisions }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^decisions\[0\]\.task_id: must be 1-200 characters, got 0; /);
    expect(err.rawMessage).toMatch(/; and more$/);
    expect(violatedFields(err)).toHaveLength(20);
  });

  it("a violation quoting a huge map key is clipped, so the gRPC trailer stays readable", async () => {
    const client = connectClient(WorkflowStateService, server.baseUrl, newTenant(), "grpc");
    const key = "k".repeat(50_000);
    const err = await rejection(
      client.saveWorkflowExecution({ execution: { executionId: "e", workflowName: "w", status: 2, labels: { [key]: "v" } } }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage.length).toBeLessThan(1_000);
    expect(err.rawMessage).toMatch(/^execution\.labels\["kkk+…: must be 1-63 characters, got more than 63$/);
  });

  it("violations never carry a lone surrogate (it has no UTF-8 form for the gRPC trailer)", () => {
    const err = invalidArgument([{ field: "x", description: `duplicates step "\uD800"` }]);
    expect(err.rawMessage).toBe('x: duplicates step "\uFFFD"');
  });

  describe("a body that is not UTF-8 answers INVALID_ARGUMENT and writes nothing", () => {
    // SaveWorkflowExecutionRequest{execution{execution_id: 0xff 0xfe, workflow_name: "w", status: RUNNING}}
    const execution = Uint8Array.of(0x0a, 0x02, 0xff, 0xfe, 0x12, 0x01, 0x77, 0x18, 0x02);
    const request = Uint8Array.of(0x0a, execution.byteLength, ...execution);
    const json = Buffer.concat([Buffer.from('{"execution":{"executionId":"'), Buffer.from([0xff]), Buffer.from('","workflowName":"w","status":2}}')]);
    const envelope = (p: Uint8Array) => Buffer.concat([Buffer.from([0, 0, 0, 0, p.byteLength]), p]);
    const cases: [string, string, Uint8Array, (status: number, h: http2.IncomingHttpHeaders, body: string) => string][] = [
      ["gRPC", "application/grpc", envelope(request), (_s, h) => `grpc ${h["grpc-status"]} ${decodeURIComponent(String(h["grpc-message"]))}`],
      ["gRPC-Web", "application/grpc-web+proto", envelope(request), (_s, _h, body) => /grpc-status: ?\d+/.exec(body)![0] + " " +
        decodeURIComponent(/grpc-message: ?(.*)\r\n/.exec(body)![1]!)],
      ["Connect binary", "application/proto", request, (s, _h, body) => `${s} ${body}`],
      ["Connect JSON", "application/json", json, (s, _h, body) => `${s} ${body}`],
    ];
    for (const [name, contentType, body, answer] of cases) {
      it(name, async () => {
        const tenant = newTenant();
        const session = http2.connect(server.baseUrl);
        const text = await new Promise<string>((resolve, reject) => {
          const req = session.request({
            ":method": "POST",
            ":path": "/orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution",
            "content-type": contentType,
            te: "trailers",
            [TENANT_HEADER]: tenant,
          });
          let status = 0;
          let headers: http2.IncomingHttpHeaders = {};
          const chunks: Buffer[] = [];
          req.on("response", (h) => {
            status = Number(h[":status"]);
            headers = h;
          });
          req.on("trailers", (t) => (headers = { ...headers, ...t }));
          req.on("data", (d: Buffer) => chunks.push(d));
          req.on("end", () => resolve(answer(status, headers, Buffer.concat(chunks).toString("latin1"))));
          req.on("error", reject);
          req.end(body);
        });
        session.close();
        const expected = contentType === "application/json"
          ? '400 {"code":"invalid_argument","message":"the request body is not valid UTF-8"}'
          : contentType === "application/proto"
            ? '400 {"code":"invalid_argument","message":"the request is not a valid protobuf message: a string field is not valid UTF-8"}'
            : `grpc${contentType.includes("web") ? "-status: " : " "}3 the request is not a valid protobuf message: a string field is not valid UTF-8`;
        expect(text).toBe(expected);
        const stored = await connectClient(WorkflowStateService, server.baseUrl, tenant).listWorkflowExecutions({});
        expect(stored.executions).toEqual([]);
      });
    }
  });
});
