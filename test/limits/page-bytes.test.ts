// Every paged List RPC stops a page early when the next row would take it past
// PAGE_MAX_BYTES, and says so with its next_page_token: a walk returns every
// row exactly once, and always progresses (a page holds at least one row,
// even a row larger than the budget, which then comes alone). Before, a page
// was bounded in rows only: ListWorkflowExecutions with page_size 1,000 over
// 2 MB executions built a 500 MB response.
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService, ListCircuitBreakerStatesResponseSchema, ListCircuitBreakerTransitionsResponseSchema } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import {
  ListRoutingDecisionsResponseSchema,
  RoutingAuditService,
  SummarizeAgentDecisionsResponseSchema,
} from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { ListAgentStatisticsResponseSchema, StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { ListWorkflowExecutionsResponseSchema } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient, workflowClient } from "../support/clients.js";
import { insertLargeIncomplete } from "../support/executions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

const BUDGET = 64 * 1024;
// What a row's encoding may add to the stored size the budget counts (field tags, lengths, timestamps).
const SLACK = 1.15;

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ pageMaxBytes: BUDGET });
});
afterAll(async () => {
  await t.close();
});

interface Page {
  ids: string[];
  nextPageToken: string;
  /** The response's protobuf encoding, in bytes. */
  bytes: number;
}

interface Case {
  /** Seeds the tenant's rows; returns the ids a full walk must return, in order. */
  seed(tenant: string): Promise<string[]>;
  list(tenant: string, pageToken: string): Promise<Page>;
}

function page<S extends DescMessage>(schema: S, res: MessageShape<S>, ids: string[], nextPageToken: string): Page {
  return { ids, nextPageToken, bytes: toBinary(schema, res).byteLength };
}

const key = (i: number) => `agent-${String(i).padStart(194, "0")}`; // 200 characters, the longest agent key

const cases: Record<string, Case> = {
  ListWorkflowExecutions: {
    // Ten executions of 25 KB and, in the middle, one larger than the whole budget.
    async seed(tenant) {
      await insertLargeIncomplete(t.knex, tenant, 5, 25_000, "a");
      await insertLargeIncomplete(t.knex, tenant, 1, 3 * BUDGET, "b");
      await insertLargeIncomplete(t.knex, tenant, 5, 25_000, "c");
      // Newest started_at first; the three prefixes share started_at values, ties by id descending.
      return [5, 4, 3, 2, 1].flatMap((i) => (i === 1 ? [`c-000${i}`, `b-000${i}`, `a-000${i}`] : [`c-000${i}`, `a-000${i}`]));
    },
    async list(tenant, pageToken) {
      const res = await workflowClient(t.baseUrl, tenant).listWorkflowExecutions({ pageSize: 1_000, pageToken });
      return page(ListWorkflowExecutionsResponseSchema, res, res.executions.map((e) => e.executionId), res.nextPageToken);
    },
  },
  ListRoutingDecisions: {
    async seed(tenant) {
      const { rows } = await t.knex.raw<{ rows: { decision_id: string }[] }>(
        `INSERT INTO routing_decisions (tenant_id, decision_id, task_id, selected_agent, success, error_message, routed_at)
         SELECT ?, gen_random_uuid(), 't', 'a', false, repeat('e', 10000), timestamptz '2026-11-26T00:00:00Z' - i * interval '1 second'
         FROM generate_series(1, 30) AS i RETURNING decision_id, routed_at`,
        [tenant],
      );
      return rows.map((r) => r.decision_id); // inserted newest first
    },
    async list(tenant, pageToken) {
      const res = await connectClient(RoutingAuditService, t.baseUrl, tenant).listRoutingDecisions({ pageSize: 1_000, pageToken });
      return page(ListRoutingDecisionsResponseSchema, res, res.decisions.map((d) => d.decisionId), res.nextPageToken);
    },
  },
  SummarizeAgentDecisions: {
    async seed(tenant) {
      await t.knex.raw(
        `INSERT INTO routing_decisions (tenant_id, decision_id, task_id, selected_agent, success, routed_at)
         SELECT ?, gen_random_uuid(), 't', 'agent-' || lpad(i::text, 194, '0'), true, now() FROM generate_series(1, 1000) AS i`,
        [tenant],
      );
      return Array.from({ length: 1000 }, (_, i) => key(i + 1));
    },
    async list(tenant, pageToken) {
      const res = await connectClient(RoutingAuditService, t.baseUrl, tenant).summarizeAgentDecisions({ pageToken });
      return page(SummarizeAgentDecisionsResponseSchema, res, res.summaries.map((s) => s.agentKey), res.nextPageToken);
    },
  },
  ListCircuitBreakerStates: {
    async seed(tenant) {
      await t.knex.raw(
        `INSERT INTO circuit_breakers (tenant_id, agent_key, state)
         SELECT ?, 'agent-' || lpad(i::text, 194, '0'), 'CLOSED' FROM generate_series(1, 1000) AS i`,
        [tenant],
      );
      return Array.from({ length: 1000 }, (_, i) => key(i + 1));
    },
    async list(tenant, pageToken) {
      const res = await connectClient(CircuitBreakerService, t.baseUrl, tenant).listCircuitBreakerStates({ pageSize: 1_000, pageToken });
      return page(ListCircuitBreakerStatesResponseSchema, res, res.circuitBreakers.map((b) => b.agentKey), res.nextPageToken);
    },
  },
  ListCircuitBreakerTransitions: {
    async seed(tenant) {
      const { rows } = await t.knex.raw<{ rows: { transition_id: string }[] }>(
        `INSERT INTO circuit_breaker_transitions (tenant_id, agent_key, from_state, to_state, reason)
         SELECT ?, ?, 'CLOSED', 'FORCED_OPEN', 'SAVED' FROM generate_series(1, 1000) AS i RETURNING transition_id`,
        [tenant, key(0)],
      );
      return rows.map((r) => String(r.transition_id)).reverse(); // newest first
    },
    async list(tenant, pageToken) {
      const res = await connectClient(CircuitBreakerService, t.baseUrl, tenant).listCircuitBreakerTransitions({ agentKey: key(0), pageSize: 1_000, pageToken });
      return page(ListCircuitBreakerTransitionsResponseSchema, res, res.transitions.map((x) => String(x.transitionId)), res.nextPageToken);
    },
  },
  ListAgentStatistics: {
    async seed(tenant) {
      await t.knex.raw(
        `INSERT INTO agent_statistics (tenant_id, agent_key)
         SELECT ?, 'agent-' || lpad(i::text, 194, '0') FROM generate_series(1, 1000) AS i`,
        [tenant],
      );
      return Array.from({ length: 1000 }, (_, i) => key(i + 1));
    },
    async list(tenant, pageToken) {
      const res = await connectClient(StatisticsService, t.baseUrl, tenant).listAgentStatistics({ pageSize: 1_000, pageToken });
      return page(ListAgentStatisticsResponseSchema, res, res.statistics.map((s) => s.agentKey), res.nextPageToken);
    },
  },
};

describe(`byte budget of every paged List RPC on ${backendName}`, () => {
  it.each(Object.keys(cases))("%s stops each page at PAGE_MAX_BYTES, with a token for the rest: the walk returns every row once", async (rpc) => {
    const c = cases[rpc]!;
    const tenant = newTenant();
    const expected = await c.seed(tenant);
    const walked: string[] = [];
    let pages = 0;
    let token = "";
    do {
      const p = await c.list(tenant, token);
      pages++;
      expect(p.ids.length).toBeGreaterThan(0);
      // A page passes the budget only when it holds a single row larger than it.
      if (p.ids.length > 1) expect(p.bytes).toBeLessThanOrEqual(BUDGET * SLACK);
      walked.push(...p.ids);
      token = p.nextPageToken;
    } while (token !== "" && pages < 1_000);
    expect(walked).toEqual(expected);
    expect(pages).toBeGreaterThan(1);
  });

  it("an execution larger than the budget comes alone in its page, and the walk goes on past it", async () => {
    const tenant = newTenant();
    await insertLargeIncomplete(t.knex, tenant, 3, 2 * BUDGET);
    const client = workflowClient(t.baseUrl, tenant);
    const pages: string[][] = [];
    let token = "";
    do {
      const res = await client.listWorkflowExecutions({ pageSize: 1_000, pageToken: token });
      pages.push(res.executions.map((e) => e.executionId));
      token = res.nextPageToken;
    } while (token !== "" && pages.length < 10);
    expect(pages).toEqual([["big-0003"], ["big-0002"], ["big-0001"]]);
  });
});
