import { type DescMethod, type DescService, type Message, toJsonString } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CircuitBreaker, CircuitBreakerService, CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { type WorkflowExecution, WorkflowStateService, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";
import { backendName } from "../support/backend.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { requestMessage, runParameters } from "./arbitraries.js";

// Property: for arbitrary requests to every RPC of the four services (mostly
// plausible, sometimes hostile in any field), sent as binary gRPC or as Connect
// JSON, the server never answers INTERNAL or UNKNOWN, keeps answering, and the
// database of the run's tenant holds exactly what the successful writes wrote.
// Failures print fast-check's seed and path; rerun with FC_SEED=... FC_PATH=...

const services: readonly DescService[] = [WorkflowStateService, CircuitBreakerService, RoutingAuditService, StatisticsService];
const methods: readonly DescMethod[] = services.flatMap((s) => s.methods);

type AnyClient = Record<string, (req: Message, opts?: { signal?: AbortSignal }) => unknown>;

/** One call: a method, its request, and whether to send it as Connect JSON. */
interface Call {
  method: DescMethod;
  request: Message;
  json: boolean;
}

const callArb: fc.Arbitrary<Call> = fc
  .constantFrom(...methods)
  .chain((method) => fc.record({ method: fc.constant(method), request: requestMessage(method.input), json: fc.boolean() }))
  // Counterexamples print one short line per call (the seed and path reproduce them in full).
  .map((call) => Object.assign(call, { [fc.toStringMethod]: () => describeCall(call) }));

function describeCall(call: Call): string {
  const text = fc.stringify(call.request);
  return `${call.method.parent.name}/${call.method.name}${call.json ? " (JSON)" : ""} ${text.length > 300 ? `${text.slice(0, 300)}...` : text}`;
}

/** What the successful writes of one tenant left, per resource. */
class Model {
  readonly executions = new Map<string, WorkflowExecution>();
  readonly breakers = new Map<string, CircuitBreaker>();
  readonly decisions = new Map<string, Timestamp>();
  /** Every agent a successful write gave statistics to. */
  readonly statisticsAgents = new Set<string>();

  /** Records what a successful call wrote; checks the counts deletes report. */
  apply(method: DescMethod, req: any, res: any): void {
    switch (`${method.parent.name}/${method.name}`) {
      case "WorkflowStateService/SaveWorkflowExecution":
        this.executions.set(res.execution.executionId, res.execution);
        break;
      case "WorkflowStateService/DeleteWorkflowExecutions": {
        const cutoff = micros(req.completedBefore);
        const gone = [...this.executions.values()].filter(
          (e) =>
            [WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED].includes(e.status) &&
            e.completedAt !== undefined &&
            micros(e.completedAt) < cutoff &&
            // An execution under legal hold is never deleted (the server's filter, in SQL).
            e.legalHold !== true &&
            (req.workflowName === "" || e.workflowName === req.workflowName) &&
            (req.statuses.length === 0 || req.statuses.includes(e.status)),
        );
        expect(res.deletedCount, "DeleteWorkflowExecutions count").toBe(BigInt(gone.length));
        for (const e of gone) this.executions.delete(e.executionId);
        break;
      }
      case "CircuitBreakerService/DeleteCircuitBreakerStates": {
        const cutoff = micros(req.updatedBefore);
        const gone = [...this.breakers.values()].filter((b) => b.state === CircuitState.CLOSED && micros(b.updateTime!) < cutoff);
        expect(res.deletedCount, "DeleteCircuitBreakerStates count").toBe(BigInt(gone.length));
        for (const b of gone) this.breakers.delete(b.agentKey);
        break;
      }
      case "CircuitBreakerService/RecoverCircuitBreakers":
        for (const b of res.circuitBreakers) this.breakers.set(b.agentKey, b);
        break;
      case "RoutingAuditService/RecordRoutingDecision":
      case "RoutingAuditService/RecordRoutingDecisions":
        for (const d of res.decision === undefined ? res.decisions : [res.decision]) {
          this.decisions.set(d.decisionId, d.routedAt);
          this.statisticsAgents.add(d.selectedAgent);
        }
        break;
      case "RoutingAuditService/DeleteRoutingDecisions": {
        const cutoff = micros(req.routedBefore);
        const gone = [...this.decisions].filter(([, at]) => micros(at) < cutoff).map(([id]) => id);
        expect(res.deletedCount, "DeleteRoutingDecisions count").toBe(BigInt(gone.length));
        for (const id of gone) this.decisions.delete(id);
        break;
      }
      case "StatisticsService/RecordTaskOutcome":
        this.statisticsAgents.add(res.statistics.agentKey);
        break;
      default: {
        // Every breaker write answers with the breaker as stored (AcquirePermission
        // of an unknown agent answers an unstored one, without create_time).
        const b: CircuitBreaker | undefined = method.parent === CircuitBreakerService ? res?.circuitBreaker : undefined;
        if (b?.createTime !== undefined) this.breakers.set(b.agentKey, b);
      }
    }
  }
}

function micros(ts: Timestamp): bigint {
  return ts.seconds * 1_000_000n + BigInt(Math.floor(ts.nanos / 1000));
}

describe(`property: arbitrary typed requests (${backendName})`, () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  // One HTTP/2 connection per protocol for the whole property, closed before the server.
  const sessions: Http2SessionManager[] = [];
  afterAll(() => {
    for (const s of sessions) s.abort();
  });

  function clients(tenant: string): { grpc: Map<DescService, AnyClient>; json: Map<DescService, AnyClient> } {
    const header: Interceptor = (next) => (req) => {
      req.header.set(TENANT_HEADER, tenant);
      return next(req);
    };
    if (sessions.length === 0) sessions.push(new Http2SessionManager(server.baseUrl), new Http2SessionManager(server.baseUrl));
    const grpc = createGrpcTransport({ baseUrl: server.baseUrl, interceptors: [header], sessionManager: sessions[0] });
    const json = createConnectTransport({
      baseUrl: server.baseUrl,
      httpVersion: "2",
      useBinaryFormat: false,
      interceptors: [header],
      sessionManager: sessions[1],
    });
    return {
      grpc: new Map(services.map((s) => [s, createClient(s, grpc) as unknown as AnyClient])),
      json: new Map(services.map((s) => [s, createClient(s, json) as unknown as AnyClient])),
    };
  }

  /** Calls one RPC; returns its response, or the error code. Streams are read to the end (Watch: to caught_up). */
  async function invoke(c: ReturnType<typeof clients>, call: Call): Promise<{ res?: unknown; code?: Code; message?: string }> {
    // JSON cannot carry some values (NaN in a Struct, timestamps out of range):
    // those go as binary gRPC.
    let json = call.json;
    if (json) {
      try {
        toJsonString(call.method.input, call.request as never);
      } catch {
        json = false;
      }
    }
    const client = (json ? c.json : c.grpc).get(call.method.parent)!;
    const fn = client[call.method.localName]!.bind(client);
    try {
      if (call.method.methodKind === "unary") return { res: await fn(call.request) };
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 5_000);
      const messages: unknown[] = [];
      let caughtUp = false;
      try {
        for await (const m of fn(call.request, { signal: abort.signal }) as AsyncIterable<any>) {
          messages.push(m);
          if (m.event?.case === "caughtUp") {
            caughtUp = true;
            break;
          }
        }
      } finally {
        clearTimeout(timer);
        abort.abort(); // ends a watch on the server too
      }
      if (!caughtUp && call.method.name === "WatchCircuitBreakers") {
        return { code: Code.DeadlineExceeded, message: "watch did not catch up within 5 s" };
      }
      return { res: messages };
    } catch (err) {
      const e = ConnectError.from(err);
      return { code: e.code, message: e.rawMessage };
    }
  }

  async function listAll<T>(page: (token: string) => Promise<{ items: T[]; next: string }>): Promise<T[]> {
    const all: T[] = [];
    let token = "";
    do {
      const { items, next } = await page(token);
      all.push(...items);
      token = next;
    } while (token !== "");
    return all;
  }

  it("no request to any RPC answers INTERNAL or UNKNOWN, and the database holds exactly what the successful writes wrote", async () => {
    let succeeded = 0;
    let rejected = 0;
    const okByMethod = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(callArb, { minLength: 1, maxLength: 12 }), async (calls) => {
        const tenant = newTenant();
        const c = clients(tenant);
        const model = new Model();
        for (const call of calls) {
          const { res, code, message } = await invoke(c, call);
          const name = `${call.method.parent.name}/${call.method.name}`;
          expect([Code.Internal, Code.Unknown, Code.DeadlineExceeded], `${name} answered ${code}: ${message}`).not.toContain(code);
          if (code === undefined) {
            succeeded++;
            okByMethod.set(call.method.name, (okByMethod.get(call.method.name) ?? 0) + 1);
            model.apply(call.method, call.request, res);
          } else {
            rejected++;
          }
        }

        // The server still answers, and the tenant's rows are the model's.
        const wf = c.grpc.get(WorkflowStateService) as unknown as Client<typeof WorkflowStateService>;
        const executions = await listAll(async (pageToken) => {
          const r = await wf.listWorkflowExecutions({ pageToken, pageSize: 1000 });
          return { items: r.executions, next: r.nextPageToken };
        });
        expect(new Map(executions.map((e) => [e.executionId, [e.status, e.workflowName, e.etag]]))).toEqual(
          new Map([...model.executions.values()].map((e) => [e.executionId, [e.status, e.workflowName, e.etag]])),
        );

        const cb = c.grpc.get(CircuitBreakerService) as unknown as Client<typeof CircuitBreakerService>;
        const breakers = await listAll(async (pageToken) => {
          const r = await cb.listCircuitBreakerStates({ pageToken, pageSize: 1000 });
          return { items: r.circuitBreakers, next: r.nextPageToken };
        });
        expect(new Map(breakers.map((b) => [b.agentKey, [b.state, b.etag]]))).toEqual(
          new Map([...model.breakers.values()].map((b) => [b.agentKey, [b.state, b.etag]])),
        );

        const ra = c.grpc.get(RoutingAuditService) as unknown as Client<typeof RoutingAuditService>;
        const decisions = await listAll(async (pageToken) => {
          const r = await ra.listRoutingDecisions({ pageToken, pageSize: 1000 });
          return { items: r.decisions, next: r.nextPageToken };
        });
        expect(new Set(decisions.map((d) => d.decisionId))).toEqual(new Set(model.decisions.keys()));

        const st = c.grpc.get(StatisticsService) as unknown as Client<typeof StatisticsService>;
        const statistics = await listAll(async (pageToken) => {
          const r = await st.listAgentStatistics({ pageToken, pageSize: 1000 });
          return { items: r.statistics, next: r.nextPageToken };
        });
        for (const s of statistics) expect(model.statisticsAgents, `statistics of ${s.agentKey}`).toContain(s.agentKey);
      }),
      runParameters(150),
    );
    // The generators must reach the handlers' happy paths, not only validation.
    expect(succeeded).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(100);
    // Each resource was written, so the comparisons above compared something.
    for (const write of ["SaveWorkflowExecution", "SaveCircuitBreakerState", "RecordCallOutcome", "RecordRoutingDecision"]) {
      expect(okByMethod.get(write) ?? 0, `successful ${write} calls`).toBeGreaterThanOrEqual(3);
    }
  }, 120_000);
});
