import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Page sizes of every List RPC with a page_size: 0 gives 50, above 1,000 gives
// 1,000 (AIP-158), and the rest of the rows follow on the next page.
// ListWorkflowExecutions has the same test in test/workflow-state/list.test.ts.

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

const ROWS = 1_001;

interface Page {
  items: unknown[];
  nextPageToken: string;
}

/** Seeds ROWS rows of the RPC's resource for `tenant` and lists one page of them. */
interface Case {
  seed(tenant: string): Promise<unknown>;
  list(tenant: string, pageSize: number, pageToken?: string): Promise<Page>;
}

const cases: Record<string, Case> = {
  ListCircuitBreakerStates: {
    seed: (tenant) => t.knex.raw(
      `INSERT INTO circuit_breakers (tenant_id, agent_key, state)
       SELECT ?, 'agent-' || lpad(i::text, 5, '0'), 'CLOSED' FROM generate_series(1, ${ROWS}) AS i`, [tenant]),
    list: async (tenant, pageSize, pageToken = "") => {
      const res = await connectClient(CircuitBreakerService, t.baseUrl, tenant).listCircuitBreakerStates({ pageSize, pageToken });
      return { items: res.circuitBreakers, nextPageToken: res.nextPageToken };
    },
  },
  ListCircuitBreakerTransitions: {
    seed: (tenant) => t.knex.raw(
      `INSERT INTO circuit_breaker_transitions (tenant_id, agent_key, from_state, to_state, reason)
       SELECT ?, 'a', 'CLOSED', 'FORCED_OPEN', 'SAVED' FROM generate_series(1, ${ROWS}) AS i`, [tenant]),
    list: async (tenant, pageSize, pageToken = "") => {
      const res = await connectClient(CircuitBreakerService, t.baseUrl, tenant).listCircuitBreakerTransitions({ agentKey: "a", pageSize, pageToken });
      return { items: res.transitions, nextPageToken: res.nextPageToken };
    },
  },
  ListRoutingDecisions: {
    seed: (tenant) => t.knex.raw(
      `INSERT INTO routing_decisions (tenant_id, decision_id, task_id, selected_agent, success, routed_at)
       SELECT ?, gen_random_uuid(), 't', 'a', true, now() - i * interval '1 second' FROM generate_series(1, ${ROWS}) AS i`, [tenant]),
    list: async (tenant, pageSize, pageToken = "") => {
      const res = await connectClient(RoutingAuditService, t.baseUrl, tenant).listRoutingDecisions({ pageSize, pageToken });
      return { items: res.decisions, nextPageToken: res.nextPageToken };
    },
  },
  ListAgentStatistics: {
    seed: (tenant) => t.knex.raw(
      `INSERT INTO agent_statistics (tenant_id, agent_key)
       SELECT ?, 'agent-' || lpad(i::text, 5, '0') FROM generate_series(1, ${ROWS}) AS i`, [tenant]),
    list: async (tenant, pageSize, pageToken = "") => {
      const res = await connectClient(StatisticsService, t.baseUrl, tenant).listAgentStatistics({ pageSize, pageToken });
      return { items: res.statistics, nextPageToken: res.nextPageToken };
    },
  },
};

describe(`page sizes of every List RPC on ${backendName}`, () => {
  it.each(Object.keys(cases))("%s returns 50 when page_size is 0, and at most 1,000 when it is larger", async (rpc) => {
    const c = cases[rpc]!;
    const tenant = newTenant();
    await c.seed(tenant);
    const byDefault = await c.list(tenant, 0);
    expect(byDefault.items).toHaveLength(50);
    expect(byDefault.nextPageToken).not.toBe("");
    for (const pageSize of [1_001, 2_147_483_647]) {
      const capped = await c.list(tenant, pageSize);
      expect(capped.items).toHaveLength(1_000);
      expect(capped.nextPageToken).not.toBe("");
      const rest = await c.list(tenant, pageSize, capped.nextPageToken);
      expect(rest.items).toHaveLength(ROWS - 1_000);
      expect(rest.nextPageToken).toBe("");
    }
  });

  it("ListTopPerformingAgents and ListUnderperformingAgents take a limit of at most 1,000 (above: INVALID_ARGUMENT naming limit)", async () => {
    const client = connectClient(StatisticsService, t.baseUrl, newTenant());
    for (const call of [client.listTopPerformingAgents({ limit: 1_001 }), client.listUnderperformingAgents({ successRateThreshold: 0.5, limit: 1_001 })]) {
      const err = ConnectError.from(await call.catch((e: unknown) => e));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain("limit");
    }
  });
});
