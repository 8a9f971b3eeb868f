// Rows the benchmarks read: B5/B6's loaded straight into the database, B3's
// saved through the server under test.
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Knex } from "knex";
import { WorkflowStateService } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";
import { B3_EXECUTIONS, execution } from "../workloads.js";

/** Saves B3's executions (0..B3_EXECUTIONS-1 of bench/workloads.ts) for `tenant` through the server at `url`, `inflight` at a time. */
export async function saveExecutions(url: string, tenant: string, inflight: number): Promise<void> {
  const client = createClient(WorkflowStateService, createGrpcTransport({ baseUrl: url }));
  const headers = { [TENANT_HEADER]: tenant };
  for (let i = 0; i < B3_EXECUTIONS; i += inflight) {
    const batch = Array.from({ length: Math.min(inflight, B3_EXECUTIONS - i) }, (_, k) => execution(i + k));
    await Promise.all(batch.map((e) => client.saveWorkflowExecution({ execution: e }, { headers })));
  }
}

/** A realistic execution context: an order with items, addresses and agent notes (~1.4 KB as JSON). */
export const CONTEXT = {
  order: {
    channel: "web",
    currency: "EUR",
    items: Array.from({ length: 6 }, (_, k) => ({
      sku: `SKU-${1000 + k}`,
      name: `Item number ${k} with a descriptive product name`,
      quantity: (k % 3) + 1,
      unitPrice: 19.99 + k,
      tags: ["fragile", "gift"].slice(0, k % 3),
    })),
  },
  customer: {
    tier: "gold",
    locale: "de-DE",
    shippingAddress: { street: "Musterstraße 12", city: "Berlin", postalCode: "10115", country: "DE" },
    billingAddress: { street: "Musterstraße 12", city: "Berlin", postalCode: "10115", country: "DE" },
  },
  routing: { requiredCapabilities: ["erp-read", "payment", "shipping"], priority: "high", maxParallelSteps: 3 },
  notes: "Customer asked for delivery after 17:00; call before arrival. Agent summary: stock verified, payment pre-authorised.",
};

/**
 * Inserts `n` executions of `tenant` (ids exec-0000001...) in one INSERT ...
 * SELECT FROM generate_series: every `terminalEvery`-th one COMPLETED (0:
 * none), the others PENDING, RUNNING or BLOCKED; pairs share a started_at, so
 * that the stream's order needs its tie-breaker. Then ANALYZE.
 */
export async function seedExecutions(knex: Knex, tenant: string, n: number, terminalEvery: number): Promise<void> {
  await knex.raw(
    `INSERT INTO workflow_executions
       (tenant_id, execution_id, workflow_name, status, context, step_executions, labels, started_at, completed_at, initiated_by)
     SELECT :tenant::uuid,
            'exec-' || lpad(i::text, 7, '0'),
            'fulfil-order',
            CASE WHEN :every > 0 AND i % :every = 0 THEN 'COMPLETED' ELSE (ARRAY['PENDING', 'RUNNING', 'BLOCKED'])[i % 3 + 1] END,
            :context::jsonb || jsonb_build_object('orderId', i, 'customerId', 'cust-' || (i % 5000)),
            jsonb_build_array(jsonb_build_object('step_id', 'fetch', 'status', 'WORKFLOW_STATUS_COMPLETED', 'agent_key', 'erp-agent', 'attempt', 1)),
            jsonb_build_object('team', 'fulfilment', 'shard', (i % 16)::text),
            started,
            CASE WHEN :every > 0 AND i % :every = 0 THEN started + interval '1 minute' END,
            'service:bench'
     FROM generate_series(1, :n::int) AS i,
          LATERAL (SELECT timestamptz '2026-01-01T00:00:00Z' + (i / 2) * interval '1 millisecond' AS started) AS s`,
    { tenant, n, every: terminalEvery, context: JSON.stringify(CONTEXT) },
  );
  await knex.raw("ANALYZE workflow_executions");
}


/**
 * How long the benchmark's own statements may run: loading 1,000,000 rows in
 * one INSERT (and clearing B6's leases) takes far longer than a call's
 * statement may (DATABASE_STATEMENT_TIMEOUT_MS, 20 s by default).
 */
export const BULK_STATEMENT_TIMEOUT_MS = 3_600_000;
