import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient, grpcJsPackage, type Protocol, tenantMetadata } from "../support/clients.js";
import { at, clientFields, decision, micros } from "../support/decisions.js";
import { errorOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

const audit = (tenant: string, protocol: Protocol = "grpc") => connectClient(RoutingAuditService, t.baseUrl, tenant, protocol);
const stats = (tenant: string) => connectClient(StatisticsService, t.baseUrl, tenant);

/** Every decision the tenant has, newest first. */
async function stored(tenant: string) {
  return (await audit(tenant).listRoutingDecisions({ pageSize: 1000 })).decisions;
}

/** A decision that sets every field, times and durations at microsecond precision. */
function fullDecision() {
  return decision({
    taskId: "task-42",
    taskType: "summarize",
    requiredCapability: "llm-long-context",
    selectedAgent: "agent-7",
    priority: -3,
    agentScore: 0.8125,
    candidates: [
      { agentKey: "agent-7", score: 0.8125 },
      { agentKey: "agent-2", score: -1.5e-7 },
      { agentKey: "agent-9", score: 0 },
    ],
    success: false,
    errorMessage: "agent timed out",
    retryAttempts: 2,
    routingDuration: micros(1_234_567),
    taskDuration: { seconds: 3_600n, nanos: 1_000 },
    routedAt: at(60, 123_456),
    workflowExecutionId: "order-42",
    stepId: "summarize",
  });
}

describe(`RecordRoutingDecision on ${backendName}`, () => {
  it.each<Protocol>(["grpc", "connect"])("stores every field and returns it as stored, over %s", async (protocol) => {
    const tenant = newTenant();
    const d = fullDecision();
    const res = await audit(tenant, protocol).recordRoutingDecision({ decision: d });
    expect(clientFields(res.decision!)).toEqual(clientFields(d));
    expect(res.decision!.createTime).toBeDefined();
    expect(await stored(tenant)).toEqual([res.decision]);
  });

  it("truncates nanos below a microsecond in routed_at and durations", async () => {
    const res = await audit(newTenant()).recordRoutingDecision({
      decision: decision({ routedAt: { seconds: 1_800_000_000n, nanos: 123_456_789 }, routingDuration: { nanos: 1_999 } }),
    });
    expect(res.decision!.routedAt).toMatchObject({ seconds: 1_800_000_000n, nanos: 123_456_000 });
    expect(res.decision!.routingDuration).toMatchObject({ seconds: 0n, nanos: 1_000 });
  });

  it("assigns a random UUID when decision_id is empty, and returns ids in lower case", async () => {
    const tenant = newTenant();
    const assigned = await audit(tenant).recordRoutingDecision({ decision: decision({ decisionId: "" }) });
    expect(assigned.decision!.decisionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const upper = randomUUID().toUpperCase();
    const lowered = await audit(tenant).recordRoutingDecision({ decision: decision({ decisionId: upper }) });
    expect(lowered.decision!.decisionId).toBe(upper.toLowerCase());
  });

  it("a retry with the same decision_id and content is stored once and returns the original, counted once in statistics", async () => {
    const tenant = newTenant();
    const d = fullDecision();
    const first = await audit(tenant).recordRoutingDecision({ decision: d, updateStatistics: true });
    // Sub-microsecond differences are not content: they are not stored.
    const again = structuredClone(d);
    again.routedAt!.nanos += 999;
    const second = await audit(tenant).recordRoutingDecision({ decision: again, updateStatistics: true });
    expect(second.decision).toEqual(first.decision);
    // The id in upper case names the same decision.
    const third = await audit(tenant).recordRoutingDecision({ decision: { ...d, decisionId: d.decisionId.toUpperCase() }, updateStatistics: true });
    expect(third.decision).toEqual(first.decision);
    expect(await stored(tenant)).toEqual([first.decision]);
    const s = await stats(tenant).getAgentStatistics({ agentKey: d.selectedAgent });
    expect(s.statistics!.totalTasks).toBe(1n);
  });

  it("concurrent retries of the same decision store it once", async () => {
    const tenant = newTenant();
    const d = fullDecision();
    const results = await Promise.all(Array.from({ length: 20 }, () => audit(tenant).recordRoutingDecision({ decision: d, updateStatistics: true })));
    for (const r of results) expect(r.decision).toEqual(results[0]!.decision);
    expect(await stored(tenant)).toHaveLength(1);
    expect((await stats(tenant).getAgentStatistics({ agentKey: d.selectedAgent })).statistics!.totalTasks).toBe(1n);
  });

  it("the same decision_id with different content answers ALREADY_EXISTS and changes nothing", async () => {
    const tenant = newTenant();
    const d = fullDecision();
    const first = await audit(tenant).recordRoutingDecision({ decision: d });
    for (const changed of [{ ...d, success: true }, { ...d, candidates: d.candidates.slice(1) }, { ...d, taskDuration: micros(1) }]) {
      const err = await errorOf(audit(tenant).recordRoutingDecision({ decision: changed, updateStatistics: true }));
      expect(err.code).toBe(Code.AlreadyExists);
      expect(err.rawMessage).toContain("decision.decision_id");
      expect(err.rawMessage).toContain(d.decisionId);
    }
    expect(await stored(tenant)).toEqual([first.decision]);
    expect(await errorOf(stats(tenant).getAgentStatistics({ agentKey: d.selectedAgent }))).toMatchObject({ code: Code.NotFound });
  });

  it("answers through @grpc/grpc-js loading the .proto files (wire compatibility)", async () => {
    const tenant = newTenant();
    const pkg = grpcJsPackage(["orchestration/state/v1/routing_audit_service.proto"]) as unknown as {
      orchestration: { state: { v1: { RoutingAuditService: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client } } };
    };
    const grpcJs = await import("@grpc/grpc-js");
    const client = new pkg.orchestration.state.v1.RoutingAuditService(`127.0.0.1:${t.port}`, grpcJs.credentials.createInsecure()) as grpc.Client & {
      recordRoutingDecision: (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;
    };
    const id = randomUUID();
    const res = await new Promise<Record<string, unknown>>((resolve, reject) =>
      client.recordRoutingDecision(
        {
          decision: {
            decision_id: id,
            task_id: "t",
            selected_agent: "a",
            success: true,
            candidates: [{ agent_key: "a", score: 0.5 }],
            routed_at: { seconds: "1800000000", nanos: 5000 },
            task_duration: { seconds: "2", nanos: 0 },
          },
        },
        tenantMetadata(tenant),
        (err, r) => (err ? reject(err) : resolve(r)),
      ),
    );
    client.close();
    expect(res.decision).toMatchObject({
      decision_id: id,
      task_id: "t",
      selected_agent: "a",
      candidates: [{ agent_key: "a", score: 0.5 }],
      routed_at: { seconds: "1800000000", nanos: 5000 },
      task_duration: { seconds: "2", nanos: 0 },
    });
    expect((await stored(tenant)).map((d) => d.decisionId)).toEqual([id]);
  });
});

describe(`RecordRoutingDecisions on ${backendName}`, () => {
  it("stores 1,000 decisions in one call and returns them in request order", async () => {
    const tenant = newTenant();
    const batch = Array.from({ length: 1000 }, (_, i) => decision({ taskId: `task-${i}`, routedAt: at(i), decisionId: i % 10 === 0 ? "" : randomUUID() }));
    const res = await audit(tenant).recordRoutingDecisions({ decisions: batch });
    expect(res.decisions.map((d) => d.taskId)).toEqual(batch.map((d) => d.taskId));
    res.decisions.forEach((d, i) => {
      if (batch[i]!.decisionId !== "") expect(d.decisionId).toBe(batch[i]!.decisionId);
    });
    expect(new Set(res.decisions.map((d) => d.decisionId)).size).toBe(1000);
    expect(await stored(tenant)).toHaveLength(1000);
  });

  it("a batch with one invalid item answers INVALID_ARGUMENT naming its index and stores nothing", async () => {
    const tenant = newTenant();
    const batch = Array.from({ length: 5 }, (_, i) => decision({ taskId: `task-${i}` }));
    batch[3] = decision({ selectedAgent: "" });
    const err = await errorOf(audit(tenant).recordRoutingDecisions({ decisions: batch, updateStatistics: true }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(["decisions[3].selected_agent"]);
    expect(await stored(tenant)).toEqual([]);
    expect((await stats(tenant).listAgentStatistics({})).statistics).toEqual([]);
  });

  it("a batch reusing a stored id with other content answers ALREADY_EXISTS naming its index and stores none of it", async () => {
    const tenant = newTenant();
    const existing = decision({ taskId: "old" });
    await audit(tenant).recordRoutingDecision({ decision: existing });
    const batch = [decision({ taskId: "new-0" }), decision({ taskId: "new-1" }), { ...existing, taskId: "changed" }];
    const err = await errorOf(audit(tenant).recordRoutingDecisions({ decisions: batch, updateStatistics: true }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.rawMessage).toContain("decisions[2].decision_id");
    expect((await stored(tenant)).map((d) => d.taskId)).toEqual(["old"]);
    expect((await stats(tenant).listAgentStatistics({})).statistics).toEqual([]);
  });

  it("a retried batch stores each decision once and counts each outcome once", async () => {
    const tenant = newTenant();
    const batch = Array.from({ length: 50 }, (_, i) => decision({ taskId: `task-${i}`, success: i % 3 !== 0, taskDuration: micros(1000 * i) }));
    const first = await audit(tenant).recordRoutingDecisions({ decisions: batch.slice(0, 20), updateStatistics: true });
    // The retry carries the first 20 again, plus 30 new ones.
    const second = await audit(tenant).recordRoutingDecisions({ decisions: batch, updateStatistics: true });
    expect(second.decisions.slice(0, 20)).toEqual(first.decisions);
    expect(await stored(tenant)).toHaveLength(50);
    const s = (await stats(tenant).getAgentStatistics({ agentKey: "agent-a" })).statistics!;
    expect(s.totalTasks).toBe(50n);
    expect(s.failedTasks).toBe(BigInt(batch.filter((d) => !d.success).length));
  });

  it("two items with the same decision_id answer INVALID_ARGUMENT naming the second", async () => {
    const tenant = newTenant();
    const d = decision();
    const err = await errorOf(audit(tenant).recordRoutingDecisions({ decisions: [decision(), d, { ...d, decisionId: d.decisionId.toUpperCase() }] }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("decisions[2].decision_id: duplicates decisions[1].decision_id");
    expect(await stored(tenant)).toEqual([]);
  });

  it.each([
    ["no decisions", 0],
    ["1,001 decisions", 1001],
  ])("%s answers INVALID_ARGUMENT naming decisions", async (_name, n) => {
    const tenant = newTenant();
    const err = await errorOf(audit(tenant).recordRoutingDecisions({ decisions: Array.from({ length: n }, () => decision()) }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^decisions: must have 1-1000 entries/);
    expect(await stored(tenant)).toEqual([]);
  });
});

describe(`bad decisions on ${backendName}`, () => {
  const year = 365n * 24n * 3600n;
  const cases: [string, Parameters<typeof decision>[0], string][] = [
    ["a decision_id that is not a UUID", { decisionId: "decision-1" }, "decision.decision_id"],
    ["a missing task_id", { taskId: "" }, "decision.task_id"],
    ["a task_id over 200 characters", { taskId: "x".repeat(201) }, "decision.task_id"],
    ["a NUL byte in task_type", { taskType: "a\0b" }, "decision.task_type"],
    ["a missing selected_agent", { selectedAgent: "" }, "decision.selected_agent"],
    ["a NaN agent_score", { agentScore: Number.NaN }, "decision.agent_score"],
    ["an infinite candidate score", { candidates: [{ agentKey: "a", score: Number.POSITIVE_INFINITY }] }, "decision.candidates[0].score"],
    ["a candidate without agent_key", { candidates: [{ agentKey: "a" }, { agentKey: "" }] }, "decision.candidates[1].agent_key"],
    ["1,001 candidates", { candidates: Array.from({ length: 1001 }, () => ({ agentKey: "a" })) }, "decision.candidates"],
    ["negative retry_attempts", { retryAttempts: -1 }, "decision.retry_attempts"],
    ["a negative routing_duration", { routingDuration: { seconds: -1n } }, "decision.routing_duration"],
    ["a task_duration over 365 days", { taskDuration: { seconds: year, nanos: 1 } }, "decision.task_duration"],
    ["a missing routed_at", { routedAt: undefined }, "decision.routed_at"],
    ["a routed_at out of range", { routedAt: { seconds: 253_402_300_800n } }, "decision.routed_at"],
    ["a workflow_execution_id over 100 characters", { workflowExecutionId: "w".repeat(101) }, "decision.workflow_execution_id"],
    ["an error_message over 10,000 characters", { errorMessage: "e".repeat(10_001) }, "decision.error_message"],
  ];

  it.each(cases)("%s answers INVALID_ARGUMENT naming the field and stores nothing", async (_name, fields, field) => {
    const tenant = newTenant();
    const err = await errorOf(audit(tenant).recordRoutingDecision({ decision: decision(fields), updateStatistics: true }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(field);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toContain(field);
    expect(await stored(tenant)).toEqual([]);
    expect((await stats(tenant).listAgentStatistics({})).statistics).toEqual([]);
  });

  it("a missing decision answers INVALID_ARGUMENT naming it", async () => {
    const err = await errorOf(audit(newTenant()).recordRoutingDecision({}));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("decision: is required");
  });

  it("a task_duration of exactly 365 days is accepted", async () => {
    const res = await audit(newTenant()).recordRoutingDecision({ decision: decision({ taskDuration: { seconds: year } }) });
    expect(res.decision!.taskDuration).toMatchObject({ seconds: year, nanos: 0 });
  });
});
