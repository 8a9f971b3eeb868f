import type { Knex } from "knex";
import type { PolicyRow } from "../models/retention-policy.js";
import { TRANSACTION_SETTINGS_SELECT } from "../../connection/session-settings.js";

// The only statements that look across tenants: they run as role
// `orchestrator_maintenance`, which may read every tenant's rows and write
// none (migration 20261204050000_retention). Everything they find is then
// written, if at all, through a TenantScope like any call.

/** The role of the cross-tenant reads. */
export const MAINTENANCE_ROLE = "orchestrator_maintenance";

/** Runs `work` in a read-only transaction as the maintenance role, each statement bounded by `timeoutMs`. */
async function asMaintenance<T>(knex: Knex, timeoutMs: number, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return knex.transaction(
    async (trx) => {
      await trx.raw(`SELECT set_config('role', ?, true), set_config('statement_timeout', ?, true), ${TRANSACTION_SETTINGS_SELECT}`, [
        MAINTENANCE_ROLE,
        String(timeoutMs),
      ]);
      return work(trx);
    },
    { readOnly: true },
  );
}

/** A tenant's saved retention policy, as stored (protobuf JSON). */
export type SavedPolicy = Pick<PolicyRow, "tenant_id" | "policy">;

/**
 * The saved retention policies, and the tenants retention must visit: with
 * `withRows`, every tenant that has rows it may delete (executions,
 * decisions, breakers, transitions) or a saved policy; without, only those
 * with a saved policy (when the server's defaults keep everything). Each
 * table is walked by its tenant-first index one tenant at a time (a loose
 * index scan), so the cost grows with the number of tenants, not of rows.
 */
export async function retentionTenants(
  knex: Knex,
  timeoutMs: number,
  options: { withRows: boolean },
): Promise<{ tenants: string[]; policies: SavedPolicy[] }> {
  return asMaintenance(knex, timeoutMs, async (trx) => {
    const policies = await trx.raw<{ rows: SavedPolicy[] }>("SELECT tenant_id, policy FROM retention_policies ORDER BY tenant_id");
    if (!options.withRows) return { tenants: policies.rows.map((p) => p.tenant_id), policies: policies.rows };
    // ORDER BY ... LIMIT 1, not min(): there is no min(uuid) before PostgreSQL 16.
    const walk = (table: string) => `
      SELECT tenant FROM (
        WITH RECURSIVE t(tenant) AS (
          (SELECT tenant_id FROM ${table} ORDER BY tenant_id LIMIT 1)
          UNION ALL
          SELECT (SELECT tenant_id FROM ${table} WHERE tenant_id > t.tenant ORDER BY tenant_id LIMIT 1) FROM t WHERE t.tenant IS NOT NULL
        ) SELECT tenant FROM t WHERE tenant IS NOT NULL
      ) AS ${table}_tenants`;
    // routing_decision_ids: a tenant whose decisions went with their months may still have their ids (see applyRetention).
    const tables = ["workflow_executions", "routing_decisions", "routing_decision_ids", "circuit_breakers", "circuit_breaker_transitions", "retention_policies"];
    const { rows } = await trx.raw<{ rows: { tenant: string }[] }>(`${tables.map(walk).join(" UNION ")} ORDER BY tenant`);
    return { tenants: rows.map((r) => r.tenant), policies: policies.rows };
  });
}

/** The aggregates behind the domain gauges of /metrics, across tenants. */
export interface DomainCounts {
  breakersByState: { state: string; count: number }[];
  /** Per status: how many, how many of them under a live lease (ClaimIncompleteWorkflows), and the oldest start. */
  incompleteByStatus: { status: string; count: number; leased: number; oldest_started_at: string }[];
}

/**
 * Breakers per state, and incomplete executions per status with those under
 * a live lease and the oldest start time (from the partial index on
 * incomplete rows, which stay few).
 */
export async function domainCounts(knex: Knex, timeoutMs: number): Promise<DomainCounts> {
  return asMaintenance(knex, timeoutMs, async (trx) => {
    const breakers = await trx.raw<{ rows: { state: string; count: string }[] }>(
      "SELECT state, count(*) AS count FROM circuit_breakers GROUP BY state",
    );
    const incomplete = await trx.raw<{ rows: { status: string; count: string; leased: string; oldest_started_at: string }[] }>(
      `SELECT status, count(*) AS count, count(*) FILTER (WHERE lease.expire_time > now()) AS leased,
              min(started_at) AS oldest_started_at
       FROM workflow_executions LEFT JOIN execution_leases AS lease USING (tenant_id, execution_id)
       WHERE status IN ('PENDING', 'RUNNING', 'BLOCKED') GROUP BY status`,
    );
    return {
      breakersByState: breakers.rows.map((r) => ({ state: r.state, count: Number(r.count) })),
      incompleteByStatus: incomplete.rows.map((r) => ({
        status: r.status,
        count: Number(r.count),
        leased: Number(r.leased),
        oldest_started_at: r.oldest_started_at,
      })),
    };
  });
}
