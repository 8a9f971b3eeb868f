import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RoutingDecision, RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { type AgentStatistics, StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { at, decision, micros } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

const audit = (tenant: string) => connectClient(RoutingAuditService, t.baseUrl, tenant);
const stats = (tenant: string) => connectClient(StatisticsService, t.baseUrl, tenant);
const us = (d: { seconds: bigint; nanos: number } | undefined) => d!.seconds * 1_000_000n + BigInt(d!.nanos / 1000);

/** Every agent's statistics, by agent_key. */
async function allStatistics(tenant: string): Promise<AgentStatistics[]> {
  return (await stats(tenant).listAgentStatistics({ pageSize: 1000 })).statistics;
}

/** The statistics the trail implies, computed here from decisions. */
function fromTrail(decisions: RoutingDecision[]) {
  const agents = [...new Set(decisions.map((d) => d.selectedAgent))].sort();
  return agents.map((agent) => {
    const mine = decisions.filter((d) => d.selectedAgent === agent);
    const n = BigInt(mine.length);
    const ok = BigInt(mine.filter((d) => d.success).length);
    const sum = mine.reduce((a, d) => a + us(d.taskDuration ?? { seconds: 0n, nanos: 0 }), 0n);
    const last = mine.reduce((a, d) => (us(d.routedAt) > us(a.routedAt) ? d : a)).routedAt!;
    return { agentKey: agent, totalTasks: n, successfulTasks: ok, failedTasks: n - ok, successRate: Number(ok) / Number(n), averageUs: (2n * sum + n) / (2n * n), lastTaskTime: us(last) };
  });
}

function observed(list: AgentStatistics[]) {
  return list.map((s) => ({
    agentKey: s.agentKey,
    totalTasks: s.totalTasks,
    successfulTasks: s.successfulTasks,
    failedTasks: s.failedTasks,
    successRate: s.successRate,
    averageUs: us(s.averageDuration),
    lastTaskTime: us(s.lastTaskTime),
  }));
}

/** n decisions over 6 agents with varied outcomes, durations and routed times. */
function decisions(n: number, seed: number): RoutingDecision[] {
  return Array.from({ length: n }, (_, i) => {
    const k = i + seed * 100_003;
    return decision({
      taskId: `task-${k}`,
      selectedAgent: `agent-${k % 6}`,
      success: (k * 13) % 10 < 8,
      taskDuration: k % 17 === 0 ? undefined : micros((k * 104_729) % 90_000_000),
      routedAt: at((i * 7919) % 100_000, k % 1000),
    });
  });
}

describe(`RecalculateStatistics on ${backendName}`, () => {
  it("after recordings with update_statistics (batches, singles, retries, concurrently), changes nothing: both paths agree exactly", async () => {
    const tenant = newTenant();
    const trail = decisions(1200, 1);
    const batches = Array.from({ length: 12 }, (_, b) => trail.slice(b * 90, b * 90 + 90));
    const singles = trail.slice(1080);
    await Promise.all([
      ...batches.map((batch) => audit(tenant).recordRoutingDecisions({ decisions: batch, updateStatistics: true })),
      ...singles.map((d) => audit(tenant).recordRoutingDecision({ decision: d, updateStatistics: true })),
      // Retries: stored once, counted once.
      audit(tenant).recordRoutingDecisions({ decisions: trail.slice(0, 300), updateStatistics: true }),
    ]);
    const before = await allStatistics(tenant);
    expect(observed(before)).toEqual(fromTrail(trail));

    expect((await stats(tenant).recalculateStatistics({})).changedAgents).toBe(0n);
    // Not even touched: update_time is unchanged.
    expect(await allStatistics(tenant)).toEqual(before);
  });

  it("rebuilds agents whose statistics drifted from the trail, and counts only those", async () => {
    const tenant = newTenant();
    const trail = decisions(200, 2);
    await audit(tenant).recordRoutingDecisions({ decisions: trail, updateStatistics: true });
    // Outcomes outside the trail make two agents drift; an agent only reported directly is not in the trail.
    await stats(tenant).recordTaskOutcome({ agentKey: "agent-1", success: false, duration: micros(5) });
    await stats(tenant).recordTaskOutcome({ agentKey: "agent-4", success: true });
    await stats(tenant).recordTaskOutcome({ agentKey: "direct-only", success: true, duration: micros(7) });
    const direct = (await stats(tenant).getAgentStatistics({ agentKey: "direct-only" })).statistics;

    expect((await stats(tenant).recalculateStatistics({})).changedAgents).toBe(2n);
    const after = await allStatistics(tenant);
    expect(observed(after.filter((s) => s.agentKey !== "direct-only"))).toEqual(fromTrail(trail));
    expect(after.find((s) => s.agentKey === "direct-only")).toEqual(direct);
    expect((await stats(tenant).recalculateStatistics({})).changedAgents).toBe(0n);
  });

  it("creates the statistics of decisions recorded without update_statistics", async () => {
    const tenant = newTenant();
    const trail = decisions(100, 3);
    await audit(tenant).recordRoutingDecisions({ decisions: trail });
    expect(await allStatistics(tenant)).toEqual([]);
    expect((await stats(tenant).recalculateStatistics({})).changedAgents).toBe(6n);
    expect(observed(await allStatistics(tenant))).toEqual(fromTrail(trail));
  });

  it("with since, rebuilds from the decisions routed at or after it only", async () => {
    const tenant = newTenant();
    const trail = decisions(300, 4);
    await audit(tenant).recordRoutingDecisions({ decisions: trail, updateStatistics: true });
    const since = at(50_000);
    const recent = trail.filter((d) => us(d.routedAt) >= us(since));
    expect(recent.length).toBeGreaterThan(100);
    expect(recent.length).toBeLessThan(200);
    expect((await stats(tenant).recalculateStatistics({ since })).changedAgents).toBe(BigInt(fromTrail(recent).length));
    expect(observed(await allStatistics(tenant))).toEqual(fromTrail(recent));
  });

  it("running while recordings with update_statistics run loses no increment", async () => {
    const tenant = newTenant();
    const trail = decisions(1000, 5);
    const batches = Array.from({ length: 40 }, (_, b) => trail.slice(b * 25, b * 25 + 25));
    await Promise.all([
      ...batches.map((batch) => audit(tenant).recordRoutingDecisions({ decisions: batch, updateStatistics: true })),
      ...Array.from({ length: 10 }, () => stats(tenant).recalculateStatistics({})),
    ]);
    // Checked before any further rebuild could repair a lost increment.
    expect(observed(await allStatistics(tenant))).toEqual(fromTrail(trail));
  });
});

describe(`tenant isolation of StatisticsService on ${backendName}`, () => {
  it("no RPC of one tenant reads, ranks, changes or rebuilds another tenant's statistics", async () => {
    const a = newTenant();
    const b = newTenant();
    await stats(a).recordTaskOutcome({ agentKey: "shared", success: true, duration: micros(10) });
    await stats(a).recordTaskOutcome({ agentKey: "a-only", success: false });
    await audit(a).recordRoutingDecision({ decision: decision({ selectedAgent: "a-trail" }) });
    const aBefore = await allStatistics(a);

    expect(ConnectError.from(await stats(b).getAgentStatistics({ agentKey: "a-only" }).catch((e: unknown) => e)).code).toBe(Code.NotFound);
    expect(await allStatistics(b)).toEqual([]);
    expect((await stats(b).listTopPerformingAgents({})).statistics).toEqual([]);
    expect((await stats(b).listUnderperformingAgents({ successRateThreshold: 1 })).statistics).toEqual([]);
    // B's rebuild sees only B's (empty) trail: A's decision is not counted for B, A is untouched.
    expect((await stats(b).recalculateStatistics({})).changedAgents).toBe(0n);
    // B's outcome for the same agent key is B's own.
    const bShared = await stats(b).recordTaskOutcome({ agentKey: "shared", success: false, duration: micros(30) });
    expect(bShared.statistics).toMatchObject({ totalTasks: 1n, failedTasks: 1n });

    expect(await allStatistics(a)).toEqual(aBefore);
    expect((await allStatistics(b)).map((s) => s.agentKey)).toEqual(["shared"]);
  });
});
