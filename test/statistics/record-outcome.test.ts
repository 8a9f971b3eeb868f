import { Code } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { type AgentStatistics, StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient, grpcJsPackage, tenantMetadata } from "../support/clients.js";
import { micros } from "../support/decisions.js";
import { errorOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

const stats = (tenant: string) => connectClient(StatisticsService, t.baseUrl, tenant);
const us = (d: { seconds: bigint; nanos: number } | undefined) => d!.seconds * 1_000_000n + BigInt(d!.nanos / 1000);

/** An agent's expected aggregates from its outcomes, computed here. */
function expected(outcomes: { success: boolean; durationUs: number }[]) {
  const total = BigInt(outcomes.length);
  const ok = BigInt(outcomes.filter((o) => o.success).length);
  const sum = outcomes.reduce((a, o) => a + BigInt(o.durationUs), 0n);
  return {
    totalTasks: total,
    successfulTasks: ok,
    failedTasks: total - ok,
    successRate: Number(ok) / Number(total),
    averageUs: (2n * sum + total) / (2n * total),
  };
}

function observed(s: AgentStatistics) {
  return {
    totalTasks: s.totalTasks,
    successfulTasks: s.successfulTasks,
    failedTasks: s.failedTasks,
    successRate: s.successRate,
    averageUs: us(s.averageDuration),
  };
}

/** Records outcomes one call each, in order, and returns them. */
async function recordAll(tenant: string, agent: string, outcomes: [success: boolean, durationUs: number][]) {
  for (const [success, durationUs] of outcomes) {
    await stats(tenant).recordTaskOutcome({ agentKey: agent, success, duration: micros(durationUs) });
  }
}

describe(`RecordTaskOutcome on ${backendName}`, () => {
  it("2,000 outcomes over 5 agents from 8 connections, 256 in flight, leave exact totals", async () => {
    const tenant = newTenant();
    const clients = Array.from({ length: 8 }, () => stats(tenant));
    const outcomes = Array.from({ length: 2000 }, (_, i) => ({
      agentKey: `agent-${i % 5}`,
      success: (i * 7) % 10 < 7,
      durationUs: (i * 7919) % 3_000_000,
    }));
    // 256 calls in flight at any time (far more than the pool's connections):
    // all 2,000 at once would only measure how long a loaded machine takes to
    // queue them, and the last could wait past the pool's acquire timeout.
    const responses: Awaited<ReturnType<ReturnType<typeof stats>["recordTaskOutcome"]>>[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 256 }, async () => {
        for (let i = next++; i < outcomes.length; i = next++) {
          const o = outcomes[i]!;
          responses[i] = await clients[i % clients.length]!.recordTaskOutcome({ agentKey: o.agentKey, success: o.success, duration: micros(o.durationUs) });
        }
      }),
    );
    for (let a = 0; a < 5; a++) {
      const agent = `agent-${a}`;
      const mine = outcomes.filter((o) => o.agentKey === agent);
      const got = await stats(tenant).getAgentStatistics({ agentKey: agent });
      expect(observed(got.statistics!)).toEqual(expected(mine));
      // Each call saw its own increment: the totals it returned are 1..400, each once.
      const seen = responses.filter((r) => r.statistics!.agentKey === agent).map((r) => Number(r.statistics!.totalTasks));
      expect(seen.sort((x, y) => x - y)).toEqual(Array.from({ length: mine.length }, (_, k) => k + 1));
    }
  });

  it("creates the agent on its first outcome and returns aggregates consistent with the counters", async () => {
    const tenant = newTenant();
    const first = await stats(tenant).recordTaskOutcome({ agentKey: "agent-x", success: false, duration: micros(3) });
    expect(observed(first.statistics!)).toEqual({ totalTasks: 1n, successfulTasks: 0n, failedTasks: 1n, successRate: 0, averageUs: 3n });
    expect(first.statistics!.lastTaskTime).toBeDefined();
    expect(first.statistics!.updateTime).toBeDefined();
    const second = await stats(tenant).recordTaskOutcome({ agentKey: "agent-x", success: true });
    // (3 + 0) / 2 = 1.5 rounds half up to 2.
    expect(observed(second.statistics!)).toEqual({ totalTasks: 2n, successfulTasks: 1n, failedTasks: 1n, successRate: 0.5, averageUs: 2n });
    expect((await stats(tenant).getAgentStatistics({ agentKey: "agent-x" })).statistics).toEqual(second.statistics);
  });

  it("answers through @grpc/grpc-js loading the .proto files (wire compatibility)", async () => {
    const tenant = newTenant();
    const grpcJs = await import("@grpc/grpc-js");
    const pkg = grpcJsPackage(["orchestration/state/v1/statistics_service.proto"]) as unknown as {
      orchestration: { state: { v1: { StatisticsService: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client } } };
    };
    const client = new pkg.orchestration.state.v1.StatisticsService(`127.0.0.1:${t.port}`, grpcJs.credentials.createInsecure()) as grpc.Client & {
      recordTaskOutcome: (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;
    };
    const res = await new Promise<Record<string, unknown>>((resolve, reject) =>
      client.recordTaskOutcome({ agent_key: "agent-g", success: true, duration: { seconds: "1", nanos: 500_000_000 } }, tenantMetadata(tenant), (err, r) =>
        err ? reject(err) : resolve(r),
      ),
    );
    client.close();
    expect(res.statistics).toMatchObject({
      agent_key: "agent-g",
      total_tasks: "1",
      successful_tasks: "1",
      failed_tasks: "0",
      success_rate: 1,
      average_duration: { seconds: "1", nanos: 500_000_000 },
    });
  });
});

describe(`reading statistics on ${backendName}`, () => {
  it("GetAgentStatistics of an agent without outcomes answers NOT_FOUND", async () => {
    const err = await errorOf(stats(newTenant()).getAgentStatistics({ agentKey: "nobody" }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain("nobody");
  });

  it("ListAgentStatistics walks every agent once, by agent_key, also while agents are added", async () => {
    const tenant = newTenant();
    const agents = Array.from({ length: 23 }, (_, i) => `agent-${String(i * 2).padStart(2, "0")}`);
    for (const agent of agents) await stats(tenant).recordTaskOutcome({ agentKey: agent, success: true });
    const seen: string[] = [];
    let pageToken = "";
    let added = 0;
    do {
      const res = await stats(tenant).listAgentStatistics({ pageSize: 5, pageToken });
      expect(res.statistics.length).toBeLessThanOrEqual(5);
      seen.push(...res.statistics.map((s) => s.agentKey));
      pageToken = res.nextPageToken;
      // An agent sorting before the cursor (not returned) and one after it (returned).
      await stats(tenant).recordTaskOutcome({ agentKey: `agent-00-${added}`, success: true });
      await stats(tenant).recordTaskOutcome({ agentKey: `agent-99-${added++}`, success: true });
    } while (pageToken !== "");
    expect(seen.filter((a) => agents.includes(a))).toEqual(agents);
    expect(seen.filter((a) => a.startsWith("agent-00-"))).toEqual([]);
    expect(seen.filter((a) => a.startsWith("agent-99-")).length).toBeGreaterThan(0);
    expect([...seen].sort()).toEqual(seen);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("ListAgentStatistics with a token that is not ours answers INVALID_ARGUMENT naming page_token", async () => {
    const err = await errorOf(stats(newTenant()).listAgentStatistics({ pageToken: "not-a-token" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("page_token");
  });

  describe("rankings", () => {
    const tenant = newTenant();
    // agent: [successes, failures, duration of each task in microseconds]
    const agents: Record<string, [number, number, number]> = {
      "agent-perfect-slow": [4, 0, 900],
      "agent-perfect-fast": [4, 0, 100],
      "agent-perfect-one": [1, 0, 50],
      "agent-half": [3, 3, 100],
      "agent-half-slow": [2, 2, 500],
      "agent-third": [1, 2, 10],
      "agent-zero": [0, 5, 10],
      "agent-two-thirds": [4, 2, 10],
    };
    beforeAll(async () => {
      await Promise.all(
        Object.entries(agents).map(([agent, [ok, failed, d]]) =>
          recordAll(tenant, agent, [...Array<[boolean, number]>(ok).fill([true, d]), ...Array<[boolean, number]>(failed).fill([false, d])]),
        ),
      );
    });
    const rate = (a: string) => agents[a]![0] / (agents[a]![0] + agents[a]![1]);
    const tasks = (a: string) => agents[a]![0] + agents[a]![1];
    const best = Object.keys(agents).sort((x, y) => rate(y) - rate(x) || agents[x]![2] - agents[y]![2] || (x < y ? -1 : 1));
    const worst = Object.keys(agents).sort((x, y) => rate(x) - rate(y) || agents[y]![2] - agents[x]![2] || (x < y ? -1 : 1));

    it("ListTopPerformingAgents orders by success rate, then average duration, and applies limit and minimum_tasks", async () => {
      expect((await stats(tenant).listTopPerformingAgents({})).statistics.map((s) => s.agentKey)).toEqual(best);
      expect((await stats(tenant).listTopPerformingAgents({ limit: 3 })).statistics.map((s) => s.agentKey)).toEqual(best.slice(0, 3));
      expect((await stats(tenant).listTopPerformingAgents({ minimumTasks: 5n })).statistics.map((s) => s.agentKey)).toEqual(best.filter((a) => tasks(a) >= 5));
    });

    it("ListUnderperformingAgents lists agents strictly below the threshold, worst first", async () => {
      for (const threshold of [0.5, 2 / 3, 1, 0.01]) {
        const got = await stats(tenant).listUnderperformingAgents({ successRateThreshold: threshold });
        expect(got.statistics.map((s) => s.agentKey), `threshold ${threshold}`).toEqual(worst.filter((a) => rate(a) < threshold));
      }
      const filtered = await stats(tenant).listUnderperformingAgents({ successRateThreshold: 1, minimumTasks: 6n, limit: 2 });
      expect(filtered.statistics.map((s) => s.agentKey)).toEqual(worst.filter((a) => rate(a) < 1 && tasks(a) >= 6).slice(0, 2));
    });
  });
});

describe(`bad statistics requests on ${backendName}`, () => {
  const year = 365n * 24n * 3600n;
  it.each([
    ["an empty agent_key", { agentKey: "" }, "agent_key"],
    ["an agent_key over 200 characters", { agentKey: "a".repeat(201) }, "agent_key"],
    ["a NUL byte in agent_key", { agentKey: "a\0" }, "agent_key"],
    ["a negative duration", { agentKey: "a", duration: { seconds: -1n } }, "duration"],
    ["a duration over 365 days", { agentKey: "a", duration: { seconds: year + 1n } }, "duration"],
  ])("RecordTaskOutcome with %s answers INVALID_ARGUMENT naming the field and records nothing", async (_name, req, field) => {
    const tenant = newTenant();
    const err = await errorOf(stats(tenant).recordTaskOutcome(req));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual([field]);
    expect((await stats(tenant).listAgentStatistics({})).statistics).toEqual([]);
  });

  it.each([
    ["ListTopPerformingAgents with a negative limit", (c: ReturnType<typeof stats>) => c.listTopPerformingAgents({ limit: -1 }), "limit"],
    ["ListTopPerformingAgents with a limit over 1,000", (c: ReturnType<typeof stats>) => c.listTopPerformingAgents({ limit: 1001 }), "limit"],
    ["ListTopPerformingAgents with negative minimum_tasks", (c: ReturnType<typeof stats>) => c.listTopPerformingAgents({ minimumTasks: -1n }), "minimum_tasks"],
    ["ListUnderperformingAgents without a threshold", (c: ReturnType<typeof stats>) => c.listUnderperformingAgents({}), "success_rate_threshold"],
    ["ListUnderperformingAgents with a threshold above 1", (c: ReturnType<typeof stats>) => c.listUnderperformingAgents({ successRateThreshold: 1.5 }), "success_rate_threshold"],
    ["ListUnderperformingAgents with a NaN threshold", (c: ReturnType<typeof stats>) => c.listUnderperformingAgents({ successRateThreshold: Number.NaN }), "success_rate_threshold"],
    ["ListAgentStatistics with a negative page_size", (c: ReturnType<typeof stats>) => c.listAgentStatistics({ pageSize: -1 }), "page_size"],
    ["GetAgentStatistics without agent_key", (c: ReturnType<typeof stats>) => c.getAgentStatistics({}), "agent_key"],
    ["RecalculateStatistics with since out of range", (c: ReturnType<typeof stats>) => c.recalculateStatistics({ since: { seconds: 253_402_300_800n } }), "since"],
  ])("%s answers INVALID_ARGUMENT naming the field", async (_name, call, field) => {
    const err = await errorOf(call(stats(newTenant())));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual([field]);
  });
});
