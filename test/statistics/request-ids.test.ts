import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { micros } from "../support/decisions.js";
import { codeOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Issue 11, section 3: RecordTaskOutcome retried with the same request_id
// counts once, also when the retries run at the same time.

let t: TestServer;
beforeAll(async () => {
  // Room for 1,000 calls of one tenant at once (the per-tenant queue).
  t = await startTestServer({ tenantQueueMax: 2_000 });
});
afterAll(async () => {
  await t.close();
});

const stats = (tenant: string) => connectClient(StatisticsService, t.baseUrl, tenant);

describe(`RecordTaskOutcome with request_id on ${backendName}`, () => {
  it("1,000 concurrent retries with the same request_id count once and all get the first answer", async () => {
    const tenant = newTenant();
    const clients = Array.from({ length: 8 }, () => stats(tenant));
    const requestId = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) =>
        clients[i % 8]!.recordTaskOutcome({ agentKey: "a", success: false, duration: micros(1_500), requestId }),
      ),
    );
    for (const a of answers) expect(a).toEqual(answers[0]);
    expect(answers[0]!.statistics).toMatchObject({ totalTasks: 1n, failedTasks: 1n });
    const stored = (await stats(tenant).getAgentStatistics({ agentKey: "a" })).statistics!;
    expect(stored).toMatchObject({ totalTasks: 1n, failedTasks: 1n, successfulTasks: 0n });

    // Another id counts; a call without an id counts every time.
    await stats(tenant).recordTaskOutcome({ agentKey: "a", success: true, requestId: randomUUID() });
    await stats(tenant).recordTaskOutcome({ agentKey: "a", success: true });
    await stats(tenant).recordTaskOutcome({ agentKey: "a", success: true });
    expect((await stats(tenant).getAgentStatistics({ agentKey: "a" })).statistics!.totalTasks).toBe(4n);
  });

  it("an id reused with another request is ALREADY_EXISTS and changes nothing; ids are per tenant", async () => {
    const tenant = newTenant();
    const requestId = "report-42";
    await stats(tenant).recordTaskOutcome({ agentKey: "a", success: true, requestId });
    expect(await codeOf(stats(tenant).recordTaskOutcome({ agentKey: "a", success: false, requestId }))).toBe(Code.AlreadyExists);
    expect(await codeOf(stats(tenant).recordTaskOutcome({ agentKey: "b", success: true, requestId }))).toBe(Code.AlreadyExists);
    expect((await stats(tenant).getAgentStatistics({ agentKey: "a" })).statistics!.totalTasks).toBe(1n);
    // The same id in another tenant is another id.
    const other = newTenant();
    await stats(other).recordTaskOutcome({ agentKey: "a", success: true, requestId });
    expect((await stats(other).getAgentStatistics({ agentKey: "a" })).statistics!.totalTasks).toBe(1n);
    expect(await codeOf(stats(tenant).recordTaskOutcome({ agentKey: "a", success: true, requestId: "x".repeat(201) }))).toBe(
      Code.InvalidArgument,
    );
  });
});
