import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type ListRoutingDecisionsRequestSchema,
  type RoutingDecision,
  RoutingAuditService,
} from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { at, decision, micros, T0 } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

const DELETE_BATCH = 7;
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ deleteBatchSize: DELETE_BATCH });
});
afterAll(async () => {
  await t.close();
});

const audit = (tenant: string) => connectClient(RoutingAuditService, t.baseUrl, tenant);
type ListRequest = MessageInitShape<typeof ListRoutingDecisionsRequestSchema>;

/** Walks every page of a listing; `between` runs after each page. */
async function walk(tenant: string, req: ListRequest, between: () => Promise<void> = async () => {}) {
  const all: RoutingDecision[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 1000; pages++) {
    const res = await audit(tenant).listRoutingDecisions({ ...req, pageToken });
    expect(res.decisions.length).toBeLessThanOrEqual(req.pageSize || 50);
    all.push(...res.decisions);
    if (res.nextPageToken === "") return all;
    pageToken = res.nextPageToken;
    await between();
  }
  throw new Error("the walk did not end");
}

const micro = (d: RoutingDecision) => d.routedAt!.seconds * 1_000_000n + BigInt(d.routedAt!.nanos / 1000);
/** The listing order: newest routed_at first, then decision_id descending. */
function newestFirst(a: RoutingDecision, b: RoutingDecision): number {
  if (micro(a) !== micro(b)) return micro(a) > micro(b) ? -1 : 1;
  return a.decisionId < b.decisionId ? 1 : a.decisionId > b.decisionId ? -1 : 0;
}

/** 120 decisions spread over tasks, types, agents, workflows, steps and outcomes, with shared routed times. */
function dataset(): RoutingDecision[] {
  return Array.from({ length: 120 }, (_, i) =>
    decision({
      taskId: `task-${i % 7}`,
      taskType: ["summarize", "classify", ""][i % 3],
      selectedAgent: `agent-${"abcd"[i % 4]}`,
      workflowExecutionId: i % 5 === 0 ? "" : `order-${i % 2}`,
      stepId: `step-${i % 3}`,
      success: i % 4 !== 1 && i % 11 !== 0,
      // Groups of three share a routed time: ties are broken by decision_id.
      routedAt: at(Math.floor(i / 3) * 10),
      routingDuration: micros(((i * 7919) % 50_000) + (i % 9 === 0 ? 1_000_000 : 0)),
      taskDuration: micros(i * 1000),
    }),
  );
}

describe(`ListRoutingDecisions on ${backendName}`, () => {
  const tenant = newTenant();
  const data = dataset();
  beforeAll(async () => {
    await audit(tenant).recordRoutingDecisions({ decisions: data });
  });

  const filters: [string, ListRequest, (d: RoutingDecision) => boolean][] = [
    ["no filter", {}, () => true],
    ["task_id", { taskId: "task-3" }, (d) => d.taskId === "task-3"],
    ["task_type", { taskType: "classify" }, (d) => d.taskType === "classify"],
    ["selected_agent", { selectedAgent: "agent-b" }, (d) => d.selectedAgent === "agent-b"],
    ["workflow_execution_id", { workflowExecutionId: "order-1" }, (d) => d.workflowExecutionId === "order-1"],
    ["workflow_execution_id and step_id", { workflowExecutionId: "order-0", stepId: "step-2" }, (d) => d.workflowExecutionId === "order-0" && d.stepId === "step-2"],
    ["success = false", { success: false }, (d) => !d.success],
    ["success = true", { success: true }, (d) => d.success],
    ["routed time range", { routedAfter: at(100), routedBefore: at(300) }, (d) => micro(d) >= micro(decision({ routedAt: at(100) })) && micro(d) < micro(decision({ routedAt: at(300) }))],
    ["every filter at once", { selectedAgent: "agent-a", success: true, routedAfter: at(50) }, (d) => d.selectedAgent === "agent-a" && d.success && d.routedAt!.seconds >= T0 + 50n],
    ["a filter nothing matches", { taskId: "nope" }, () => false],
  ];

  it.each(filters)("with %s walks exactly the matching decisions, newest first, 7 per page", async (_name, req, matches) => {
    const expected = data.filter(matches).sort(newestFirst).map((d) => d.decisionId);
    const got = await walk(tenant, { ...req, pageSize: 7 });
    expect(got.map((d) => d.decisionId)).toEqual(expected);
  });

  it("defaults to 50 per page and caps page_size at 1,000", async () => {
    expect((await audit(tenant).listRoutingDecisions({})).decisions).toHaveLength(50);
    expect((await audit(tenant).listRoutingDecisions({ pageSize: 5000 })).decisions).toHaveLength(120);
  });

  it("paging while decisions are recorded returns every earlier decision exactly once, in order", async () => {
    const own = newTenant();
    const original = dataset();
    await audit(own).recordRoutingDecisions({ decisions: original });
    let round = 0;
    const got = await walk(own, { pageSize: 9 }, async () => {
      round++;
      // One newer than everything (ahead of the cursor: not returned) and one
      // older than everything (behind it: returned at the end).
      await audit(own).recordRoutingDecisions({
        decisions: [decision({ taskId: `new-${round}`, routedAt: at(10_000 + round) }), decision({ taskId: `old-${round}`, routedAt: at(-10_000 - round) })],
      });
    });
    const ids = got.map((d) => d.decisionId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(got.filter((d) => !d.taskId.startsWith("new-") && !d.taskId.startsWith("old-")).map((d) => d.decisionId)).toEqual(
      [...original].sort(newestFirst).map((d) => d.decisionId),
    );
    expect(got.some((d) => d.taskId.startsWith("new-"))).toBe(false);
    expect(got.filter((d) => d.taskId.startsWith("old-")).length).toBe(round);
    expect([...got].sort(newestFirst)).toEqual(got);
  });

  it("a page_token used with other filters, or not ours, answers INVALID_ARGUMENT naming page_token", async () => {
    const first = await audit(tenant).listRoutingDecisions({ pageSize: 2, selectedAgent: "agent-a" });
    for (const req of [
      { pageSize: 2, selectedAgent: "agent-b", pageToken: first.nextPageToken },
      { pageToken: "garbage" },
      { pageToken: Buffer.from(JSON.stringify({ k: ["x", "y"], f: "z" })).toString("base64url") },
    ] satisfies ListRequest[]) {
      const err = ConnectError.from(await audit(tenant).listRoutingDecisions(req).catch((e: unknown) => e));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain("page_token");
    }
  });

  it.each([
    ["a negative page_size", { pageSize: -1 }, "page_size"],
    ["a NUL byte in selected_agent", { selectedAgent: "a\0" }, "selected_agent"],
    ["a task_id over 200 characters", { taskId: "t".repeat(201) }, "task_id"],
    ["routed_before out of range", { routedBefore: { seconds: -62_135_596_801n } }, "routed_before"],
  ] as [string, ListRequest, string][])("%s answers INVALID_ARGUMENT naming it", async (_name, req, field) => {
    const err = ConnectError.from(await audit(tenant).listRoutingDecisions(req).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(field);
  });
});

/** The expected summary of some decisions, computed here: nearest-rank percentiles, mean rounded half up. */
function expectedSummaries(decisions: RoutingDecision[]) {
  const us = (d: RoutingDecision) => d.routingDuration!.seconds * 1_000_000n + BigInt(d.routingDuration!.nanos / 1000);
  const agents = [...new Set(decisions.map((d) => d.selectedAgent))].sort();
  return agents.map((agent) => {
    const mine = decisions.filter((d) => d.selectedAgent === agent);
    const n = mine.length;
    const sorted = mine.map(us).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const sum = sorted.reduce((a, b) => a + b, 0n);
    const ok = mine.filter((d) => d.success).length;
    const rank = (p: number) => sorted[Math.max(1, Math.ceil(p * n)) - 1]!;
    return {
      agentKey: agent,
      totalDecisions: BigInt(n),
      successfulDecisions: BigInt(ok),
      failedDecisions: BigInt(n - ok),
      successRate: ok / n,
      averageUs: (2n * sum + BigInt(n)) / (2n * BigInt(n)),
      p50Us: rank(0.5),
      p95Us: rank(0.95),
    };
  });
}

describe(`SummarizeAgentDecisions on ${backendName}`, () => {
  const asMicros = (d: { seconds: bigint; nanos: number } | undefined) => d!.seconds * 1_000_000n + BigInt(d!.nanos / 1000);

  it.each([
    ["the whole trail", {}, () => true],
    ["a time range", { routedAfter: at(100), routedBefore: at(250) }, (d: RoutingDecision) => d.routedAt!.seconds >= T0 + 100n && d.routedAt!.seconds < T0 + 250n],
    ["an open-ended range", { routedAfter: at(300) }, (d: RoutingDecision) => d.routedAt!.seconds >= T0 + 300n],
  ])("over %s matches the values computed from the decisions", async (_name, req, inRange) => {
    const tenant = newTenant();
    const data = dataset();
    await audit(tenant).recordRoutingDecisions({ decisions: data });
    const res = await audit(tenant).summarizeAgentDecisions(req);
    const got = res.summaries.map((s) => ({
      agentKey: s.agentKey,
      totalDecisions: s.totalDecisions,
      successfulDecisions: s.successfulDecisions,
      failedDecisions: s.failedDecisions,
      successRate: s.successRate,
      averageUs: asMicros(s.averageRoutingDuration),
      p50Us: asMicros(s.p50RoutingDuration),
      p95Us: asMicros(s.p95RoutingDuration),
    }));
    expect(got).toEqual(expectedSummaries(data.filter(inRange)));
    expect(got.length).toBeGreaterThan(0);
  });

  it("rounds the mean to the nearest microsecond, halves up, and takes nearest-rank percentiles", async () => {
    const tenant = newTenant();
    await audit(tenant).recordRoutingDecisions({
      decisions: [1, 2, 2, 10].map((us) => decision({ routingDuration: micros(us) })),
    });
    const [s] = (await audit(tenant).summarizeAgentDecisions({})).summaries;
    expect(asMicros(s!.averageRoutingDuration)).toBe(4n); // 15 / 4 = 3.75
    expect(asMicros(s!.p50RoutingDuration)).toBe(2n);
    expect(asMicros(s!.p95RoutingDuration)).toBe(10n);
    await audit(tenant).recordRoutingDecision({ decision: decision({ routingDuration: micros(0) }) });
    const [after] = (await audit(tenant).summarizeAgentDecisions({})).summaries;
    expect(asMicros(after!.averageRoutingDuration)).toBe(3n); // 15 / 5 = 3
  });

  it("a range with no decisions gives no summaries; a bad timestamp answers INVALID_ARGUMENT", async () => {
    expect((await audit(newTenant()).summarizeAgentDecisions({})).summaries).toEqual([]);
    const err = ConnectError.from(await audit(newTenant()).summarizeAgentDecisions({ routedAfter: { seconds: 1n, nanos: -1 } }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("routed_after");
  });
});

describe(`DeleteRoutingDecisions on ${backendName}`, () => {
  it(`deletes exactly the decisions routed before the cutoff, in batches of ${DELETE_BATCH}, and returns the count`, async () => {
    const tenant = newTenant();
    const old = Array.from({ length: 4 * DELETE_BATCH + 3 }, (_, i) => decision({ taskId: `old-${i}`, routedAt: at(i - 1000) }));
    const recent = Array.from({ length: 10 }, (_, i) => decision({ taskId: `recent-${i}`, routedAt: at(i) }));
    // Exactly at the cutoff: kept (strictly before is deleted).
    const boundary = decision({ taskId: "boundary", routedAt: at(-1) });
    await audit(tenant).recordRoutingDecisions({ decisions: [...old, ...recent, boundary] });
    const res = await audit(tenant).deleteRoutingDecisions({ routedBefore: at(-1) });
    expect(res.deletedCount).toBe(BigInt(old.length));
    const left = await walk(tenant, { pageSize: 1000 });
    expect(left.map((d) => d.taskId).sort()).toEqual([...recent.map((d) => d.taskId), "boundary"].sort());
    expect((await audit(tenant).deleteRoutingDecisions({ routedBefore: at(-1) })).deletedCount).toBe(0n);
  });

  it("does not change the statistics; a later RecalculateStatistics rebuilds them from what remains", async () => {
    const tenant = newTenant();
    const stats = connectClient(StatisticsService, t.baseUrl, tenant);
    await audit(tenant).recordRoutingDecisions({
      decisions: [decision({ routedAt: at(-10) }), decision({ routedAt: at(10), success: false })],
      updateStatistics: true,
    });
    await audit(tenant).deleteRoutingDecisions({ routedBefore: at(0) });
    expect((await stats.getAgentStatistics({ agentKey: "agent-a" })).statistics!.totalTasks).toBe(2n);
    expect((await stats.recalculateStatistics({})).changedAgents).toBe(1n);
    expect((await stats.getAgentStatistics({ agentKey: "agent-a" })).statistics).toMatchObject({ totalTasks: 1n, failedTasks: 1n });
  });

  it("a missing routed_before answers INVALID_ARGUMENT and deletes nothing", async () => {
    const tenant = newTenant();
    await audit(tenant).recordRoutingDecision({ decision: decision({ routedAt: at(-10) }) });
    const err = ConnectError.from(await audit(tenant).deleteRoutingDecisions({}).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("routed_before: is required");
    expect(await walk(tenant, {})).toHaveLength(1);
  });
});

describe(`tenant isolation of RoutingAuditService on ${backendName}`, () => {
  it("two tenants may use the same decision ids; neither sees, lists, summarizes, conflicts with or deletes the other's", async () => {
    const a = newTenant();
    const b = newTenant();
    const shared = randomUUID();
    const aDecisions = [decision({ decisionId: shared, taskId: "a-task", routedAt: at(-100) }), decision({ taskId: "a-other", routedAt: at(-50) })];
    await audit(a).recordRoutingDecisions({ decisions: aDecisions, updateStatistics: true });

    // B sees nothing of A.
    expect(await walk(b, {})).toEqual([]);
    expect(await walk(b, { taskId: "a-task" })).toEqual([]);
    expect((await audit(b).summarizeAgentDecisions({})).summaries).toEqual([]);

    // B's decision with A's id and other content is B's own, not a conflict.
    const bOwn = await audit(b).recordRoutingDecision({ decision: decision({ decisionId: shared, taskId: "b-task", routedAt: at(-100) }), updateStatistics: true });
    expect(bOwn.decision!.taskId).toBe("b-task");
    const bBatch = await audit(b).recordRoutingDecisions({ decisions: [{ ...aDecisions[1]!, taskId: "b-batch" }] });
    expect(bBatch.decisions[0]!.decisionId).toBe(aDecisions[1]!.decisionId);

    // B's delete does not touch A's.
    expect((await audit(b).deleteRoutingDecisions({ routedBefore: at(0) })).deletedCount).toBe(2n);
    expect((await walk(a, {})).map((d) => d.taskId)).toEqual(["a-other", "a-task"]);
    const [aSummary] = (await audit(a).summarizeAgentDecisions({})).summaries;
    expect(aSummary!.totalDecisions).toBe(2n);
    // Each tenant's statistics counted only its own decisions.
    const aStats = await connectClient(StatisticsService, t.baseUrl, a).getAgentStatistics({ agentKey: "agent-a" });
    expect(aStats.statistics!.totalTasks).toBe(2n);
    const bStats = await connectClient(StatisticsService, t.baseUrl, b).getAgentStatistics({ agentKey: "agent-a" });
    expect(bStats.statistics!.totalTasks).toBe(1n);
  });
});
