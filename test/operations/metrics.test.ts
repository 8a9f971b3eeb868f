import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { WorkflowExecutionSchema, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createMetrics, type Metrics } from "../../src/metrics/metrics.js";
import { startOperationsServer, type OperationsServer } from "../../src/operations/operations-server.js";
import { silentLogger } from "../../src/logging/logger.js";
import { connectClient, grpcJsPackage, tenantMetadata, workflowClient } from "../support/clients.js";
import { decision } from "../support/decisions.js";
import { parseExposition, promtoolCheckMetrics, sampleValue, type Sample } from "../support/prometheus.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// /metrics after a known mix of calls over every protocol (grpc-js and
// Connect's gRPC client take the gRPC unary fast path; gRPC-Web and Connect
// go through Connect's handlers), read with Prometheus's own parser.

type Obj = Record<string, unknown>;
type UnaryMethod = (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: Obj) => void) => grpc.ClientUnaryCall;
type StreamMethod = (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<Obj>;

const WORKFLOW = "orchestration.state.v1.WorkflowStateService";

let t: TestServer;
let metrics: Metrics;
let operations: OperationsServer;
let grpcJs: grpc.Client & Record<string, UnaryMethod | StreamMethod>;
let samples: Sample[];
let scrape: string;
const tenant = newTenant();
const leaseTenant = newTenant();
const agent = `agent-${tenant}`;

function call(method: string, req: object, md: grpc.Metadata): Promise<Obj> {
  return new Promise((resolve, reject) => {
    (grpcJs[method] as UnaryMethod).call(grpcJs, req, md, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

function readStream(method: string, req: object, md: grpc.Metadata): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    const stream = (grpcJs[method] as StreamMethod).call(grpcJs, req, md);
    stream.on("data", () => n++);
    stream.on("error", reject);
    stream.on("end", () => resolve(n));
  });
}

const codeOf = (p: Promise<unknown>) => p.then(() => Code[0], (err: unknown) => Code[ConnectError.from(err).code]);

async function get(path: string): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(`http://127.0.0.1:${operations.port}${path}`);
  return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

const rpc = (method: string, service = WORKFLOW) => ({ grpc_service: service, grpc_method: method });

beforeAll(async () => {
  metrics = createMetrics({ maxAgentSeries: 100 });
  t = await startTestServer({ streamBatchSize: 2 }, undefined, undefined, { metrics });
  operations = await startOperationsServer({ port: 0, host: "127.0.0.1", registry: metrics.registry, health: t.server.health, logger: silentLogger });
  const v1 = ((grpcJsPackage().orchestration as grpc.GrpcObject).state as grpc.GrpcObject).v1 as grpc.GrpcObject;
  grpcJs = new (v1.WorkflowStateService as grpc.ServiceClientConstructor)(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure()) as typeof grpcJs;

  // The mix. grpc-js (fast path): 2 saves OK (RUNNING), 3 gets NOT_FOUND, one stream of 2 executions.
  const md = tenantMetadata(tenant);
  for (const id of ["m-1", "m-2"]) {
    await call("SaveWorkflowExecution", { execution: { execution_id: id, workflow_name: "w", status: "WORKFLOW_STATUS_RUNNING" } }, md);
  }
  for (let i = 0; i < 3; i++) await call("GetWorkflowExecution", { execution_id: "missing" }, md).catch(() => {});
  expect(await readStream("StreamIncompleteWorkflows", {}, md)).toBe(2);
  // Connect's gRPC client (fast path): 1 save OK.
  const viaGrpc = workflowClient(t.baseUrl, tenant, "grpc");
  await viaGrpc.saveWorkflowExecution({ execution: create(WorkflowExecutionSchema, { executionId: "m-3", workflowName: "w", status: WorkflowStatus.COMPLETED }) });
  // gRPC-Web: 2 gets OK, 1 save INVALID_ARGUMENT (no status).
  const viaWeb = workflowClient(t.baseUrl, tenant, "grpc-web");
  for (let i = 0; i < 2; i++) await viaWeb.getWorkflowExecution({ executionId: "m-1" });
  expect(await codeOf(viaWeb.saveWorkflowExecution({ execution: { executionId: "bad", workflowName: "w" } }))).toBe("InvalidArgument");
  // Connect: 1 list OK, 1 get without a tenant header INVALID_ARGUMENT.
  await workflowClient(t.baseUrl, tenant, "connect").listWorkflowExecutions({});
  expect(await codeOf(workflowClient(t.baseUrl, undefined, "connect").getWorkflowExecution({ executionId: "m-1" }))).toBe("InvalidArgument");
  // A replica of another tenant claims its one BLOCKED execution (a live lease).
  const claimer = workflowClient(t.baseUrl, leaseTenant, "grpc");
  // (Stored with SQL: a save here would count in the RPC series this test checks.)
  await t.knex("workflow_executions").insert({ tenant_id: leaseTenant, execution_id: "leased", workflow_name: "w", status: "BLOCKED", started_at: new Date().toISOString() });
  for await (const _ of claimer.claimIncompleteWorkflows({ owner: "replica-m", leaseDuration: { seconds: 600n, nanos: 0 } }));
  // Outcomes: 3 successes and 1 failure for the agent; 2 failed decisions recorded one by one (group
  // commit), one of them with update_statistics (an outcome).
  const stats = connectClient(StatisticsService, t.baseUrl, tenant);
  for (const success of [true, true, true, false]) await stats.recordTaskOutcome({ agentKey: agent, success });
  const audit = connectClient(RoutingAuditService, t.baseUrl, tenant);
  for (const updateStatistics of [true, false]) {
    await audit.recordRoutingDecision({ decision: decision({ selectedAgent: agent, success: false }), updateStatistics });
  }

  const res = await get("/metrics");
  expect(res.status).toBe(200);
  expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
  scrape = res.body;
  samples = await parseExposition(scrape);
});

afterAll(async () => {
  grpcJs?.close();
  await operations?.close();
  await t?.close();
});

describe("/metrics", () => {
  it("counts every call by method and code, on the gRPC fast path, gRPC-Web and Connect alike", () => {
    const handled = (method: string, grpc_code: string) => sampleValue(samples, "grpc_server_handled_total", { ...rpc(method), grpc_code });
    expect(handled("SaveWorkflowExecution", "OK")).toBe(3);
    expect(handled("SaveWorkflowExecution", "InvalidArgument")).toBe(1);
    expect(handled("GetWorkflowExecution", "NotFound")).toBe(3);
    expect(handled("GetWorkflowExecution", "OK")).toBe(2);
    expect(handled("GetWorkflowExecution", "InvalidArgument")).toBe(1);
    expect(handled("ListWorkflowExecutions", "OK")).toBe(1);
    expect(handled("StreamIncompleteWorkflows", "OK")).toBe(1);
    // Series of codes that never happened exist, at zero (rate() works from the start).
    expect(handled("DeleteWorkflowExecutions", "Unavailable")).toBe(0);
    const started = (method: string) => sampleValue(samples, "grpc_server_started_total", rpc(method));
    expect(started("SaveWorkflowExecution")).toBe(4);
    expect(started("GetWorkflowExecution")).toBe(6);
    expect(started("StreamIncompleteWorkflows")).toBe(1);
    expect(sampleValue(samples, "grpc_server_started_total", { ...rpc("StreamIncompleteWorkflows"), grpc_type: "server_stream" })).toBe(1);
    expect(sampleValue(samples, "grpc_server_started_total", { ...rpc("GetWorkflowExecution"), grpc_type: "unary" })).toBe(6);
  });

  it("times every call in grpc_server_handling_seconds, and counts the messages of streams", () => {
    expect(sampleValue(samples, "grpc_server_handling_seconds_count", rpc("GetWorkflowExecution"))).toBe(6);
    expect(sampleValue(samples, "grpc_server_handling_seconds_bucket", { ...rpc("GetWorkflowExecution"), le: "+Inf" })).toBe(6);
    expect(sampleValue(samples, "grpc_server_handling_seconds_sum", rpc("GetWorkflowExecution"))).toBeGreaterThan(0);
    expect(sampleValue(samples, "grpc_server_msg_sent_total", rpc("StreamIncompleteWorkflows"))).toBe(2);
    expect(sampleValue(samples, "grpc_server_msg_received_total", rpc("StreamIncompleteWorkflows"))).toBe(1);
    // Unary calls: one received; one sent when they succeed (as go-grpc-prometheus counts them).
    expect(sampleValue(samples, "grpc_server_msg_received_total", rpc("GetWorkflowExecution"))).toBe(6);
    expect(sampleValue(samples, "grpc_server_msg_sent_total", rpc("GetWorkflowExecution"))).toBe(2);
  });

  it("exports the pool, the database, group commit, agent outcomes and the domain gauges", () => {
    expect(sampleValue(samples, "orchestrator_state_db_pool_max_connections")).toBeGreaterThanOrEqual(1);
    expect(sampleValue(samples, "orchestrator_state_db_pool_connections", { state: "idle" })).toBeGreaterThanOrEqual(0);
    expect(sampleValue(samples, "orchestrator_state_db_pool_connections", { state: "in_use" })).toBeGreaterThanOrEqual(0);
    expect(sampleValue(samples, "orchestrator_state_db_pool_pending_acquires")).toBe(0);
    expect(sampleValue(samples, "orchestrator_state_database_up")).toBe(1);
    expect(sampleValue(samples, "orchestrator_state_routing_decision_batch_size_sum")).toBe(2);
    const outcome = (o: string) => sampleValue(samples, "orchestrator_state_agent_task_outcomes_total", { tenant, agent, outcome: o });
    expect(outcome("success")).toBe(3);
    expect(outcome("failure")).toBe(2);
    // Across tenants (the database may hold other tests' rows): at least this test's two RUNNING executions.
    expect(sampleValue(samples, "orchestrator_state_incomplete_executions", { status: "RUNNING" })).toBeGreaterThanOrEqual(2);
    // At least the BLOCKED execution claimed above, never more than there are.
    const leased = sampleValue(samples, "orchestrator_state_leased_executions", { status: "BLOCKED" });
    expect(leased).toBeGreaterThanOrEqual(1);
    expect(leased).toBeLessThanOrEqual(sampleValue(samples, "orchestrator_state_incomplete_executions", { status: "BLOCKED" })!);
    const oldest = sampleValue(samples, "orchestrator_state_incomplete_execution_oldest_start_timestamp_seconds", { status: "RUNNING" });
    expect(oldest).toBeLessThanOrEqual(Date.now() / 1000);
    for (const state of ["CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"]) {
      expect(sampleValue(samples, "orchestrator_state_circuit_breakers", { state })).toBeGreaterThanOrEqual(0);
    }
  });

  it("holds every series the alerting rules (monitoring/alerts.yml) use", async () => {
    const rules = await readFile(path.resolve(import.meta.dirname, "../../monitoring/alerts.yml"), "utf8");
    const code = rules.split("\n").filter((line) => !line.trim().startsWith("#")).join("\n");
    const used = new Set(code.match(/\b(?:grpc_server|orchestrator_state)_\w+/g));
    expect(used.size).toBeGreaterThanOrEqual(6);
    // A series is exported when the scrape has samples of it, or declares it
    // (a labelled counter has no sample before its first increment).
    const exported = (name: string) => samples.some((s) => s.name === name) || scrape.includes(`# TYPE ${name} `);
    expect([...used].filter((name) => !exported(name))).toEqual([]);
  });

  it("parses cleanly with promtool check metrics too", async () => {
    const { output } = await promtoolCheckMetrics(scrape);
    // promtool lints names and help texts: ours raise no finding. prom-client's
    // own process series name three gauges *_total (nodejs_active_handles_total,
    // _requests_total, _resources_total), which it flags; nothing else may be.
    const findings = output.trim().split("\n").filter((line) => line !== "");
    expect(findings.filter((line) => !/^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/.test(line))).toEqual([]);
  });
});
