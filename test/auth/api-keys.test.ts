// With API keys configured, every RPC of the four services needs
// `authorization: Bearer <key>`, and acts for the key's tenant only.
import type { DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { randomUUID } from "node:crypto";
import { hashKey } from "../../src/auth/key-store.js";
import { backendName } from "../support/backend.js";
import { grpcJsPackage } from "../support/clients.js";
import { codeOf } from "../support/errors.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { nextWithin } from "../support/streams.js";
import { authClient, type Caller, keyFixture, newKey } from "./support.js";

const SERVICES: DescService[] = [WorkflowStateService, CircuitBreakerService, RoutingAuditService, StatisticsService];
type AnyClient = Record<string, (req: object, options?: object) => unknown>;

const k = keyFixture();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ authKeys: k.authKeys });
});
afterAll(async () => {
  await t.close();
});

/** The code a call of any kind ends with: a unary call, or a server stream read to its end. */
async function codeOfCall(service: DescService, method: string, caller: Caller, req: object = {}): Promise<Code | "ok"> {
  const client = authClient(service, t.baseUrl, caller) as unknown as AnyClient;
  const kind = service.methods.find((m) => m.localName === method)!.methodKind;
  if (kind === "unary") return codeOf(client[method]!(req) as Promise<unknown>);
  // A watch never ends by itself: a deadline stops it once it is past the checks.
  const stream = client[method]!(req, { timeoutMs: 1_000 }) as AsyncIterable<unknown>;
  return codeOf((async () => { for await (const _ of stream); })()).then((c) => (c === Code.DeadlineExceeded ? "ok" : c));
}

/** Every method of the four services, as [service, method] pairs. */
function everyMethod(): [DescService, string][] {
  return SERVICES.flatMap((s) => s.methods.map((m) => [s, m.localName] as [DescService, string]));
}

const executionOf = (id: string) => ({ execution: { executionId: id, workflowName: "w", status: WorkflowStatus.RUNNING } });
// Execution ids of this run: PostgreSQL keeps those of earlier runs.
const run = randomUUID().slice(0, 8);
const SAVED = `no-header-${run}`;

/** Whether tenant A has the execution, asked through the API with A's own key. */
async function tenantAHas(id: string): Promise<boolean> {
  const code = await codeOf(authClient(WorkflowStateService, t.baseUrl, { key: k.writerA }).getWorkflowExecution({ executionId: id }));
  if (code !== "ok" && code !== Code.NotFound) throw new Error(`GetWorkflowExecution answered ${code}`);
  return code === "ok";
}

describe("a call without a valid key answers UNAUTHENTICATED", () => {
  it("every method of the four services, unary and streaming, without an authorization header", async () => {
    const methods = everyMethod();
    expect(methods.some(([s, m]) => s.methods.find((x) => x.localName === m)!.methodKind === "server_streaming")).toBe(true);
    for (const [service, method] of methods) {
      expect(await codeOfCall(service, method, { tenant: k.tenantA }), `${service.typeName}/${method}`).toBe(Code.Unauthenticated);
    }
  });

  it.each([
    ["an unknown key", `Bearer ${"f".repeat(64)}`],
    ["the SHA-256 of a valid key instead of the key", `Bearer ${hashKey(k.writerA)}`],
    ["a valid key with one character changed", `Bearer ${k.writerA.slice(0, -1)}${k.writerA.endsWith("0") ? "1" : "0"}`],
    ["another scheme", `Basic ${Buffer.from(`x:${k.writerA}`).toString("base64")}`],
    ["the key without a scheme", k.writerA],
    ["the scheme without a key", "Bearer"],
    ["two tokens", `Bearer ${k.writerA} ${k.writerA}`],
    ["two authorization values", `Bearer ${k.writerA}, Bearer ${k.writerA}`],
  ])("%s", async (_name, authorization) => {
    for (const [service, method, req] of [
      [WorkflowStateService, "getWorkflowExecution", { executionId: "x" }],
      [StatisticsService, "recordTaskOutcome", { agentKey: "a", success: true }],
      [WorkflowStateService, "streamIncompleteWorkflows", {}],
    ] as const) {
      expect(await codeOfCall(service, method, { authorization, tenant: k.tenantA }, req), method).toBe(Code.Unauthenticated);
    }
  });

  it("and writes nothing", async () => {
    await authClient(WorkflowStateService, t.baseUrl, { authorization: "Bearer nope-nope-nope-nope", tenant: k.tenantA })
      .saveWorkflowExecution(executionOf(`unauthenticated-${run}`))
      .catch(() => {});
    expect(await tenantAHas(`unauthenticated-${run}`)).toBe(false);
  });
});

describe(`a valid key acts for its tenant, on ${backendName}`, () => {
  it("without x-tenant-id: the key names the tenant (unary and streaming)", async () => {
    const a = authClient(WorkflowStateService, t.baseUrl, { key: k.writerA });
    await a.saveWorkflowExecution(executionOf(SAVED));
    const rows = await t.knex("workflow_executions").where({ execution_id: SAVED }).select("tenant_id");
    expect(rows).toEqual([{ tenant_id: k.tenantA }]);
    const streamed = [];
    for await (const r of a.streamIncompleteWorkflows({})) streamed.push(r.execution?.executionId);
    expect(streamed).toContain(SAVED);
  });

  it("with x-tenant-id naming its tenant, in any case", async () => {
    const a = authClient(WorkflowStateService, t.baseUrl, { key: k.writerA, tenant: k.tenantA.toUpperCase() });
    expect((await a.getWorkflowExecution({ executionId: SAVED })).execution?.executionId).toBe(SAVED);
  });

  it("the scheme is case-insensitive", async () => {
    const a = authClient(WorkflowStateService, t.baseUrl, { authorization: `bearer ${k.writerA}` });
    expect((await a.getWorkflowExecution({ executionId: SAVED })).execution?.executionId).toBe(SAVED);
  });

  it("another tenant's key does not see the tenant's rows", async () => {
    const b = authClient(WorkflowStateService, t.baseUrl, { key: k.writerB });
    expect(await codeOf(b.getWorkflowExecution({ executionId: SAVED }))).toBe(Code.NotFound);
    const streamed = [];
    for await (const r of b.streamIncompleteWorkflows({})) streamed.push(r.execution?.executionId);
    expect(streamed).not.toContain(SAVED);
  });

  it("over every protocol", async () => {
    for (const protocol of ["grpc", "grpc-web", "connect"] as const) {
      const a = authClient(StatisticsService, t.baseUrl, { key: k.writerA }, protocol);
      const res = await a.recordTaskOutcome({ agentKey: `agent-${protocol}`, success: true });
      expect(res.statistics?.totalTasks, protocol).toBe(1n);
      const none = authClient(StatisticsService, t.baseUrl, {}, protocol);
      expect(await codeOf(none.getAgentStatistics({ agentKey: `agent-${protocol}` })), protocol).toBe(Code.Unauthenticated);
    }
  });
});

describe("an x-tenant-id that is not the key's tenant answers PERMISSION_DENIED", () => {
  it("on every method of the four services, unary and streaming", async () => {
    for (const [service, method] of everyMethod()) {
      expect(await codeOfCall(service, method, { key: k.writerA, tenant: k.tenantB }), `${service.typeName}/${method}`).toBe(
        Code.PermissionDenied,
      );
    }
  });

  it("and writes nothing in either tenant", async () => {
    const a = authClient(WorkflowStateService, t.baseUrl, { key: k.writerA, tenant: k.tenantB });
    expect(await codeOf(a.saveWorkflowExecution(executionOf(`cross-tenant-${run}`)))).toBe(Code.PermissionDenied);
    expect(await tenantAHas(`cross-tenant-${run}`)).toBe(false);
    const b = authClient(WorkflowStateService, t.baseUrl, { key: k.writerB });
    expect(await codeOf(b.getWorkflowExecution({ executionId: `cross-tenant-${run}` }))).toBe(Code.NotFound);
  });

  it("a malformed x-tenant-id is still INVALID_ARGUMENT", async () => {
    const a = authClient(WorkflowStateService, t.baseUrl, { key: k.writerA, tenant: "tenant-a" });
    expect(await codeOf(a.getWorkflowExecution({ executionId: "x" }))).toBe(Code.InvalidArgument);
  });
});

describe("a read-only key", () => {
  const isRead = (s: DescService, m: string) =>
    s.methods.find((x) => x.localName === m)!.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;

  it("the contract declares the reads NO_SIDE_EFFECTS and nothing else", () => {
    const reads = everyMethod().filter(([s, m]) => isRead(s, m)).map(([, m]) => m);
    const writes = everyMethod().filter(([s, m]) => !isRead(s, m)).map(([, m]) => m);
    expect(reads.every((m) => /^(get|list|summarize|stream|watch)/.test(m))).toBe(true);
    expect(writes.some((m) => /^(get|list|summarize|stream|watch)/.test(m))).toBe(false);
    // Side effects that do not look like writes by their name are writes.
    expect(writes).toEqual(expect.arrayContaining(["acquirePermission", "recoverCircuitBreakers", "recalculateStatistics"]));
  });

  it("is refused every write of the four services with PERMISSION_DENIED", async () => {
    const writes = everyMethod().filter(([s, m]) => !isRead(s, m));
    expect(writes.length).toBeGreaterThanOrEqual(12);
    for (const [service, method] of writes) {
      expect(await codeOfCall(service, method, { key: k.readerA }), `${service.typeName}/${method}`).toBe(Code.PermissionDenied);
    }
  });

  it("may call every read of the four services, unary and streaming", async () => {
    for (const [service, method] of everyMethod().filter(([s, m]) => isRead(s, m))) {
      // An empty request may be invalid (INVALID_ARGUMENT) or name nothing
      // (NOT_FOUND): either way it got past authentication and authorization.
      const code = await codeOfCall(service, method, { key: k.readerA, tenant: k.tenantA });
      expect([Code.Unauthenticated, Code.PermissionDenied], `${service.typeName}/${method}`).not.toContain(code);
    }
  });

  it("reads its tenant's rows and writes nothing", async () => {
    const r = authClient(WorkflowStateService, t.baseUrl, { key: k.readerA });
    expect((await r.getWorkflowExecution({ executionId: SAVED })).execution?.executionId).toBe(SAVED);
    const breakers = authClient(CircuitBreakerService, t.baseUrl, { key: k.readerA });
    const it = breakers.watchCircuitBreakers({})[Symbol.asyncIterator]();
    expect((await nextWithin(it)).value?.event.case).toBe("caughtUp");
    await it.return?.();
    expect(await codeOf(r.saveWorkflowExecution(executionOf(`read-only-${run}`)))).toBe(Code.PermissionDenied);
    expect(await tenantAHas(`read-only-${run}`)).toBe(false);
  });
});

describe("grpc-js", () => {
  it("sends the key as metadata: none is UNAUTHENTICATED, another tenant PERMISSION_DENIED, its own works", async () => {
    const pkg = grpcJsPackage();
    const v1 = ((pkg.orchestration as grpc.GrpcObject).state as grpc.GrpcObject).v1 as grpc.GrpcObject;
    const Ctor = v1.WorkflowStateService as grpc.ServiceClientConstructor;
    const client = new Ctor(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure());
    const call = (md: grpc.Metadata) =>
      new Promise<{ code: number; execution?: { execution_id: string } }>((resolve) => {
        (client.GetWorkflowExecution as (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: { execution: { execution_id: string } }) => void) => void)
          .call(client, { execution_id: SAVED }, md, (err, res) => resolve(err ? { code: err.code } : { code: 0, ...res }));
      });
    const md = (entries: Record<string, string>) => {
      const m = new grpc.Metadata();
      for (const [name, value] of Object.entries(entries)) m.set(name, value);
      return m;
    };
    try {
      expect((await call(md({ "x-tenant-id": k.tenantA }))).code).toBe(grpc.status.UNAUTHENTICATED);
      expect((await call(md({ authorization: `Bearer ${newKey()}` }))).code).toBe(grpc.status.UNAUTHENTICATED);
      expect((await call(md({ authorization: `Bearer ${k.writerA}`, "x-tenant-id": k.tenantB }))).code).toBe(grpc.status.PERMISSION_DENIED);
      const ok = await call(md({ authorization: `Bearer ${k.writerA}` }));
      expect(ok.code).toBe(grpc.status.OK);
      expect(ok.execution?.execution_id).toBe(SAVED);
    } finally {
      client.close();
    }
  });
});

describe("logs", () => {
  it("name the key's id on each RPC line and never contain a key or its hash", async () => {
    const before = t.logs.length;
    const wrong = newKey();
    await authClient(StatisticsService, t.baseUrl, { key: k.writerB }).recordTaskOutcome({ agentKey: "logged", success: true });
    await codeOf(authClient(StatisticsService, t.baseUrl, { key: k.readerA }).recordTaskOutcome({ agentKey: "logged", success: true }));
    await codeOf(authClient(StatisticsService, t.baseUrl, { key: wrong }).getAgentStatistics({ agentKey: "logged" }));
    await codeOf(authClient(StatisticsService, t.baseUrl, { key: k.writerA, tenant: k.tenantB }).getAgentStatistics({ agentKey: "x" }));
    const rpcs = t.logs.slice(before).filter((l) => l.msg === "rpc");
    expect(rpcs.map((l) => [l.key, l.tenant, l.code])).toEqual([
      ["writer-b", k.tenantB, "OK"],
      ["reader-a", undefined, "PERMISSION_DENIED"],
      [undefined, undefined, "UNAUTHENTICATED"],
      ["writer-a", undefined, "PERMISSION_DENIED"],
    ]);
    // Every line this server wrote, from startup on (this file's calls used every key).
    const text = JSON.stringify(t.logs);
    for (const key of [k.writerA, k.readerA, k.writerB, wrong]) {
      expect(text).not.toContain(key);
      expect(text).not.toContain(hashKey(key));
    }
    expect(text).not.toContain("Bearer");
  });
});
