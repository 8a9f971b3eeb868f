import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Interceptor } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStateService, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { loadConfig, type TracingConfig } from "../../src/config.js";
import { startTracing, type Tracing } from "../../src/tracing/tracing.js";
import { connectClient, grpcJsPackage, tenantMetadata, workflowClient } from "../support/clients.js";
import { startCollector, type CollectedSpan, type Collector } from "../support/otlp-collector.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createClient } from "@connectrpc/connect";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";

// Traces exported with OTLP to a collector in this process: each RPC a
// SERVER span continuing the caller's traceparent (gRPC metadata or HTTP
// header), each SQL statement it runs a CLIENT child, and its log lines
// carrying the trace id.

const SERVER = 2;
const CLIENT = 3;

/** A W3C traceparent of a sampled caller span, with its ids. */
function caller() {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

type Obj = Record<string, unknown>;
type UnaryMethod = (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: Obj) => void) => grpc.ClientUnaryCall;

async function tracedServer(protocol: TracingConfig["protocol"]) {
  const collector = await startCollector();
  const config = loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: collector.url, OTEL_EXPORTER_OTLP_PROTOCOL: protocol, OTEL_SERVICE_NAME: "orchestrator-state-test" }).tracing!;
  const server = await startTestServer({ streamBatchSize: 2 });
  const tracing = startTracing(config, server.knex);
  // A second server over the same database, with tracing: the first one is only the database's owner.
  const traced = await startTestServer({ streamBatchSize: 2 }, server.knex, undefined, { tracing });
  return { collector, tracing, traced, server };
}

describe("tracing over OTLP/HTTP protobuf", () => {
  let collector: Collector;
  let tracing: Tracing;
  let t: TestServer;
  let owner: TestServer;
  let spans: CollectedSpan[];
  const tenant = newTenant();
  const get = caller();
  const stream = caller();
  const web = caller();

  beforeAll(async () => {
    ({ collector, tracing, traced: t, server: owner } = await tracedServer("http/protobuf"));
    // gRPC-Web save, traceparent as an HTTP header.
    await connectClient(WorkflowStateService, t.baseUrl, tenant, "grpc-web").saveWorkflowExecution(
      { execution: { executionId: "e-1", workflowName: "w", status: WorkflowStatus.RUNNING } },
      { headers: { traceparent: web.traceparent } },
    );
    await workflowClient(t.baseUrl, tenant).saveWorkflowExecution({ execution: { executionId: "e-2", workflowName: "w", status: WorkflowStatus.PENDING } });
    await workflowClient(t.baseUrl, tenant).saveWorkflowExecution({ execution: { executionId: "e-3", workflowName: "w", status: WorkflowStatus.BLOCKED } });
    // grpc-js get (the gRPC fast path), traceparent as gRPC metadata.
    const v1 = ((grpcJsPackage().orchestration as grpc.GrpcObject).state as grpc.GrpcObject).v1 as grpc.GrpcObject;
    const client = new (v1.WorkflowStateService as grpc.ServiceClientConstructor)(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure());
    const md = tenantMetadata(tenant);
    md.set("traceparent", get.traceparent);
    await new Promise((resolve, reject) =>
      (client.GetWorkflowExecution as UnaryMethod).call(client, { execution_id: "e-1" }, md, (err, res) => (err ? reject(err) : resolve(res))),
    );
    client.close();
    // A stream over Connect (three executions, batches of two: two SELECTs at least).
    const withTrace: Interceptor = (next) => (req) => {
      req.header.set("traceparent", stream.traceparent);
      req.header.set(TENANT_HEADER, tenant);
      return next(req);
    };
    const connect = createClient(WorkflowStateService, createConnectTransport({ baseUrl: t.baseUrl, httpVersion: "2", interceptors: [withTrace] }));
    let n = 0;
    for await (const _ of connect.streamIncompleteWorkflows({})) n++;
    expect(n).toBe(3);
    await tracing.shutdown(); // flushes every span to the collector
    spans = collector.spans;
  });
  afterAll(async () => {
    await t?.close();
    await owner?.close();
    await collector?.close();
  });

  const rpcSpan = (traceId: string, method: string) => {
    const found = spans.filter((s) => s.traceId === traceId && s.kind === SERVER);
    expect(found.map((s) => s.name)).toEqual([`orchestration.state.v1.WorkflowStateService/${method}`]);
    return found[0]!;
  };
  const children = (parent: CollectedSpan) => spans.filter((s) => s.parentSpanId === parent.spanId);

  it("exports with protobuf, as the service named by OTEL_SERVICE_NAME", () => {
    expect(collector.contentTypes.every((type) => type === "application/x-protobuf")).toBe(true);
    expect(spans.length).toBeGreaterThan(0);
    expect(new Set(spans.map((s) => s.serviceName))).toEqual(new Set(["orchestrator-state-test"]));
  });

  it("a gRPC call's span continues the traceparent of its metadata, and its SQL statements are its children", () => {
    const rpc = rpcSpan(get.traceId, "GetWorkflowExecution");
    expect(rpc.parentSpanId).toBe(get.spanId);
    expect(rpc.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.service": "orchestration.state.v1.WorkflowStateService", "rpc.method": "GetWorkflowExecution", "rpc.grpc.status_code": 0 });
    const sql = children(rpc);
    expect(sql.length).toBeGreaterThanOrEqual(1);
    for (const s of sql) {
      expect(s.kind).toBe(CLIENT);
      expect(s.traceId).toBe(get.traceId);
    }
    expect(sql.some((s) => s.name === "SELECT" && String(s.attributes["db.query.text"]).includes("workflow_executions"))).toBe(true);
  });

  it("a gRPC-Web call's span continues the traceparent of its HTTP header", () => {
    const rpc = rpcSpan(web.traceId, "SaveWorkflowExecution");
    expect(rpc.parentSpanId).toBe(web.spanId);
    expect(children(rpc).some((s) => s.name === "INSERT")).toBe(true);
  });

  it("a stream's span has every batch's SELECT as a child, read while the stream runs", () => {
    const rpc = rpcSpan(stream.traceId, "StreamIncompleteWorkflows");
    expect(rpc.attributes["rpc.system"]).toBe("connect_rpc");
    expect(children(rpc).filter((s) => s.name === "SELECT").length).toBeGreaterThanOrEqual(2);
  });

  it("a call without a traceparent starts a trace of its own; statements outside any call make no span", () => {
    const roots = spans.filter((s) => s.kind === SERVER && s.parentSpanId === "");
    expect(roots.length).toBe(2); // the two saves without a traceparent
    for (const s of spans.filter((x) => x.kind === CLIENT)) expect(spans.some((p) => p.spanId === s.parentSpanId)).toBe(true);
  });

  it("the call's log lines carry its trace id", () => {
    const line = t.logs.find((l) => l.msg === "rpc" && l.procedure === "orchestration.state.v1.WorkflowStateService/GetWorkflowExecution");
    expect(line?.traceId).toBe(get.traceId);
    expect(line?.spanId).toBe(rpcSpan(get.traceId, "GetWorkflowExecution").spanId);
    const streamLine = t.logs.find((l) => l.msg === "rpc" && l.procedure === "orchestration.state.v1.WorkflowStateService/StreamIncompleteWorkflows");
    expect(streamLine?.traceId).toBe(stream.traceId);
  });
});

describe("tracing over OTLP/HTTP JSON", () => {
  it("exports the same span tree as JSON", async () => {
    const { collector, tracing, traced, server } = await tracedServer("http/json");
    try {
      const tenant = newTenant();
      const parent = caller();
      await workflowClient(traced.baseUrl, tenant, "connect").saveWorkflowExecution(
        { execution: { executionId: "j", workflowName: "w", status: WorkflowStatus.RUNNING } },
        { headers: { traceparent: parent.traceparent } },
      );
      await tracing.shutdown();
      expect(collector.contentTypes.every((type) => type === "application/json")).toBe(true);
      const rpc = collector.spans.find((s) => s.traceId === parent.traceId && s.kind === SERVER);
      expect(rpc?.parentSpanId).toBe(parent.spanId);
      expect(collector.spans.some((s) => s.parentSpanId === rpc?.spanId && s.kind === CLIENT && s.name === "INSERT")).toBe(true);
    } finally {
      await traced.close();
      await server.close();
      await collector.close();
    }
  });
});

describe("operations configuration", () => {
  it("METRICS_PORT is off unless set, and may not be the gRPC port", () => {
    expect(loadConfig({}).metricsPort).toBeUndefined();
    expect(loadConfig({ METRICS_PORT: "9464" }).metricsPort).toBe(9464);
    expect(() => loadConfig({ METRICS_PORT: "50051" })).toThrow(/METRICS_PORT must differ from PORT/);
    expect(() => loadConfig({ METRICS_PORT: "x" })).toThrow(/METRICS_PORT/);
  });

  it("retention settings take 0 or a duration with a unit, within range", () => {
    expect(loadConfig({ RETENTION_COMPLETED_EXECUTIONS: "90d", RETENTION_INTERVAL: "30s" })).toMatchObject({
      retentionDefaults: { completedExecutionMaxAge: 90 * 86_400, failedExecutionMaxAge: 0 },
      retentionIntervalMs: 30_000,
    });
    expect(loadConfig({ RETENTION_INTERVAL: "0" }).retentionIntervalMs).toBe(0);
    for (const bad of ["90", "30s", "36501d", "1w", "-1d"]) {
      expect(() => loadConfig({ RETENTION_FAILED_EXECUTIONS: bad })).toThrow(/RETENTION_FAILED_EXECUTIONS/);
    }
    expect(() => loadConfig({ RETENTION_INTERVAL: "8d" })).toThrow(/RETENTION_INTERVAL/);
  });
});

describe("tracing configuration", () => {
  it("is off unless an OTLP endpoint or OTEL_TRACES_EXPORTER=otlp is set, and OTEL_SDK_DISABLED or none turn it off", () => {
    expect(loadConfig({}).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_SERVICE_NAME: "x" }).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_TRACES_EXPORTER: "otlp" }).tracing?.url).toBe("http://localhost:4318/v1/traces");
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }).tracing?.url).toBe("http://collector:4318/v1/traces");
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" }).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_TRACES_EXPORTER: "none" }).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_TRACES_EXPORTER: "otlp", OTEL_RESOURCE_ATTRIBUTES: "service.name=a%20b,deployment.environment=prod" }).tracing).toMatchObject({
      serviceName: "a b",
      resourceAttributes: { "deployment.environment": "prod" },
    });
  });

  it("refuses what it cannot do, naming the variable", () => {
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(/OTEL_TRACES_EXPORTER/);
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL/);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT/);
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: "otlp", OTEL_TRACES_SAMPLER: "sometimes" })).toThrow(/OTEL_TRACES_SAMPLER/);
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: "otlp", OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" })).toThrow(/OTEL_TRACES_SAMPLER_ARG/);
  });
});
