import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { at, decision, micros } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Issue 12, item 8: an agent's summed task durations (int8 microseconds) at
// their limit. The contract (AgentStatistics.average_duration) says the sum
// saturates there: outcomes keep being counted, nothing is refused, and
// nothing answers INTERNAL ("bigint out of range").

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

const INT8_MAX = 2n ** 63n - 1n;
const YEAR_US = 365 * 24 * 3600 * 1_000_000;
const stats = (tenant: string) => connectClient(StatisticsService, t.baseUrl, tenant);
const audit = (tenant: string) => connectClient(RoutingAuditService, t.baseUrl, tenant);
const us = (d: { seconds: bigint; nanos: number } | undefined) => d!.seconds * 1_000_000n + BigInt(d!.nanos / 1000);

/**
 * Puts an agent's summed durations `belowMax` microseconds under the int8
 * maximum, as about 292,000 maximal tasks would (the test's superuser
 * connection, outside row-level security).
 */
async function nearlyFull(tenant: string, agent: string, belowMax: bigint) {
  await t.knex.raw(`UPDATE agent_statistics SET total_duration_us = ?::int8 WHERE tenant_id = ? AND agent_key = ?`, [
    String(INT8_MAX - belowMax),
    tenant,
    agent,
  ]);
}

describe(`summed task durations at their limit on ${backendName}`, () => {
  it("RecordTaskOutcome past the limit counts the task and saturates the sum", async () => {
    const tenant = newTenant();
    await stats(tenant).recordTaskOutcome({ agentKey: "a", success: true, duration: micros(1) });
    await nearlyFull(tenant, "a", 1_000n);

    const after = (await stats(tenant).recordTaskOutcome({ agentKey: "a", success: false, duration: micros(YEAR_US) })).statistics!;
    expect(after.totalTasks).toBe(2n);
    expect(after.failedTasks).toBe(1n);
    // The sum stays at the int8 maximum: the average is that sum over 2 tasks.
    expect(us(after.averageDuration)).toBe((INT8_MAX + 1n) / 2n);

    // And it keeps counting.
    const again = (await stats(tenant).recordTaskOutcome({ agentKey: "a", success: true, duration: micros(YEAR_US) })).statistics!;
    expect(again.totalTasks).toBe(3n);
    expect(us(again.averageDuration)).toBe((2n * INT8_MAX + 3n) / 6n);
  });

  it("audit batches with update_statistics for a saturated agent are stored and counted", async () => {
    const tenant = newTenant();
    await stats(tenant).recordTaskOutcome({ agentKey: "a", success: true });
    await nearlyFull(tenant, "a", 10n);

    const decisions = Array.from({ length: 20 }, (_, i) =>
      decision({ selectedAgent: i % 2 === 0 ? "a" : "b", routedAt: at(i), taskDuration: micros(YEAR_US) }),
    );
    await audit(tenant).recordRoutingDecisions({ decisions, updateStatistics: true });
    await audit(tenant).recordRoutingDecision({ decision: decision({ selectedAgent: "a", taskDuration: micros(YEAR_US) }), updateStatistics: true });

    const a = (await stats(tenant).getAgentStatistics({ agentKey: "a" })).statistics!;
    expect(a.totalTasks).toBe(12n);
    expect(us(a.averageDuration)).toBe((2n * INT8_MAX + 12n) / 24n);
    const b = (await stats(tenant).getAgentStatistics({ agentKey: "b" })).statistics!;
    expect(b.totalTasks).toBe(10n);
    expect(us(b.averageDuration)).toBe(BigInt(YEAR_US));
  });

  it("RecalculateStatistics over decisions whose durations sum past the limit saturates the sum", async () => {
    const tenant = newTenant();
    await audit(tenant).recordRoutingDecisions({
      decisions: [0, 1, 2].map((i) => decision({ selectedAgent: "a", routedAt: at(i), taskDuration: micros(i) })),
    });
    // Three decisions of 4e18 microseconds each (what about 380,000 maximal
    // decisions sum to), written past validation by the test's superuser.
    await t.knex.raw(`UPDATE routing_decisions SET task_duration_us = 4000000000000000000 WHERE tenant_id = ?`, [tenant]);

    const { changedAgents } = await stats(tenant).recalculateStatistics({});
    expect(changedAgents).toBe(1n);
    const a = (await stats(tenant).getAgentStatistics({ agentKey: "a" })).statistics!;
    expect(a.totalTasks).toBe(3n);
    expect(us(a.averageDuration)).toBe((2n * INT8_MAX + 3n) / 6n);
    // A second rebuild finds the same saturated sum: nothing changes.
    expect((await stats(tenant).recalculateStatistics({})).changedAgents).toBe(0n);
  });
});
