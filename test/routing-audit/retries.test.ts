import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { decision, micros } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Issue 11, section 3: RecordRoutingDecision retried with the same
// decision_id (its request id), 1,000 times at once, stores the decision and
// counts its outcome in the statistics once (through the group commit).

let t: TestServer;
beforeAll(async () => {
  // Room for 1,000 calls of one tenant at once (the per-tenant queue).
  t = await startTestServer({ tenantQueueMax: 2_000 });
});
afterAll(async () => {
  await t.close();
});

describe(`RecordRoutingDecision retried with the same decision_id on ${backendName}`, () => {
  it("1,000 concurrent retries store one decision and count it once", async () => {
    const tenant = newTenant();
    const clients = Array.from({ length: 8 }, (_, i) => connectClient(RoutingAuditService, t.baseUrl, tenant, i % 2 === 0 ? "grpc" : "connect"));
    const d = decision({ decisionId: randomUUID(), selectedAgent: "a", success: false, taskDuration: micros(2_000) });
    const answers = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) => clients[i % 8]!.recordRoutingDecision({ decision: d, updateStatistics: true })),
    );
    for (const a of answers) expect(a).toEqual(answers[0]);
    const listed = await clients[0]!.listRoutingDecisions({ pageSize: 100 });
    expect(listed.decisions.map((x) => x.decisionId)).toEqual([d.decisionId]);
    const stats = (await connectClient(StatisticsService, t.baseUrl, tenant).getAgentStatistics({ agentKey: "a" })).statistics!;
    expect(stats).toMatchObject({ totalTasks: 1n, failedTasks: 1n });
    expect(stats.averageDuration).toMatchObject({ seconds: 0n, nanos: 2_000_000 });
  });
});
