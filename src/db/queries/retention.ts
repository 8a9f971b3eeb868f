import { parseJsonAttributes } from "../models/plain-rows.js";
import { type PolicyRow, RetentionPolicyModel } from "../models/retention-policy.js";
import type { TenantScope } from "../../tenancy/tenant-scope.js";

export type { PolicyRow } from "../models/retention-policy.js";

// The statements of RetentionService and of the background retention that are
// not already another service's: the policy row, the dry run's counts, and the
// batched deletes of breakers and transitions. Executions and routing
// decisions are deleted by their own services' batch deletes
// (deleteTerminalBatch, deleteRoutedBeforeBatch). Each function takes the
// tenant's scope, like every query.

/** The tenant's saved policy, or undefined. */
export async function findPolicy(scope: TenantScope): Promise<PolicyRow | undefined> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: PolicyRow[] }>("SELECT * FROM retention_policies WHERE tenant_id = ?", [scope.tenantId]);
    return rows[0] === undefined ? undefined : parseJsonAttributes(RetentionPolicyModel, rows[0]);
  });
}

/**
 * Saves the tenant's policy and returns the row; with `expectedVersion`, only
 * if the stored policy has that version (undefined otherwise, also when none
 * is stored).
 */
export async function savePolicy(scope: TenantScope, policy: object, expectedVersion: string | undefined): Promise<PolicyRow | undefined> {
  return scope.run(async (db) => {
    const json = JSON.stringify(policy);
    const { rows } = expectedVersion === undefined
      ? await db.raw<{ rows: PolicyRow[] }>(
          `INSERT INTO retention_policies AS p (tenant_id, policy) VALUES (?, ?::jsonb)
           ON CONFLICT (tenant_id) DO UPDATE SET policy = EXCLUDED.policy, version = p.version + 1, update_time = now()
           RETURNING *`,
          [scope.tenantId, json],
        )
      : await db.raw<{ rows: PolicyRow[] }>(
          `UPDATE retention_policies SET policy = ?::jsonb, version = version + 1, update_time = now()
           WHERE tenant_id = ? AND version = ?::bigint RETURNING *`,
          [json, scope.tenantId, expectedVersion],
        );
    return rows[0] === undefined ? undefined : parseJsonAttributes(RetentionPolicyModel, rows[0]);
  });
}

/** Terminal executions of `status` completed before `cutoff`: those retention may delete, and those kept by a legal hold. */
export async function countExpiredExecutions(scope: TenantScope, status: string, cutoff: string): Promise<{ deletable: number; held: number }> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: { deletable: string; held: string }[] }>(
      `SELECT count(*) FILTER (WHERE NOT legal_hold) AS deletable, count(*) FILTER (WHERE legal_hold) AS held
       FROM workflow_executions WHERE tenant_id = ? AND status = ? AND completed_at < ?::timestamptz`,
      [scope.tenantId, status, cutoff],
    );
    return { deletable: Number(rows[0]!.deletable), held: Number(rows[0]!.held) };
  });
}

/** Routing decisions routed before `cutoff`. */
export async function countDecisionsBefore(scope: TenantScope, cutoff: string): Promise<number> {
  return count(scope, "SELECT count(*) AS n FROM routing_decisions WHERE tenant_id = ? AND routed_at < ?::timestamptz", cutoff);
}

/** CLOSED breakers last written before `cutoff`. */
export async function countClosedBreakersBefore(scope: TenantScope, cutoff: string): Promise<number> {
  return count(scope, `SELECT count(*) AS n FROM circuit_breakers WHERE tenant_id = ? AND state = 'CLOSED' AND update_time < ?::timestamptz`, cutoff);
}

/** Transitions before `cutoff` that retention may delete (see TRANSITION_DELETABLE). */
export async function countTransitionsBefore(scope: TenantScope, cutoff: string): Promise<number> {
  return count(scope, `SELECT count(*) AS n FROM circuit_breaker_transitions t WHERE tenant_id = ? AND transition_time < ?::timestamptz AND ${TRANSITION_DELETABLE}`, cutoff);
}

/**
 * Deletes at most `limit` CLOSED breakers last written before `cutoff`;
 * returns how many. The state is rechecked on rows changed concurrently: a
 * breaker that left CLOSED meanwhile is not deleted.
 */
export async function deleteClosedBreakersBatch(scope: TenantScope, cutoff: string, limit: number): Promise<number> {
  return deleted(scope, `
    DELETE FROM circuit_breakers WHERE tenant_id = :tenant AND state = 'CLOSED' AND update_time < :cutoff::timestamptz
      AND agent_key IN (
        SELECT agent_key FROM circuit_breakers
        WHERE tenant_id = :tenant AND state = 'CLOSED' AND update_time < :cutoff::timestamptz
        LIMIT :limit)
    RETURNING 1`, cutoff, limit);
}

/** Deletes at most `limit` transitions before `cutoff` that retention may delete; returns how many. */
export async function deleteTransitionsBatch(scope: TenantScope, cutoff: string, limit: number): Promise<number> {
  return deleted(scope, `
    DELETE FROM circuit_breaker_transitions WHERE tenant_id = :tenant AND (agent_key, transition_id) IN (
      SELECT agent_key, transition_id FROM circuit_breaker_transitions t
      WHERE tenant_id = :tenant AND transition_time < :cutoff::timestamptz AND ${TRANSITION_DELETABLE}
      LIMIT :limit)
    RETURNING 1`, cutoff, limit);
}

// A transition is kept while its agent's breaker is in a state other than
// CLOSED: it explains the state in force. (The breaker's row lock is not
// taken: a breaker that opens while its old transitions are deleted loses
// only transitions older than the max age, and its new one is kept.)
const TRANSITION_DELETABLE = `NOT EXISTS (
  SELECT 1 FROM circuit_breakers b WHERE b.tenant_id = t.tenant_id AND b.agent_key = t.agent_key AND b.state <> 'CLOSED')`;

async function count(scope: TenantScope, sql: string, cutoff: string): Promise<number> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: { n: string }[] }>(sql, [scope.tenantId, cutoff]);
    return Number(rows[0]!.n);
  });
}

async function deleted(scope: TenantScope, sql: string, cutoff: string, limit: number): Promise<number> {
  return scope.run(async (db) => {
    // RETURNING: the row count reads the same on both drivers.
    const { rows } = await db.raw<{ rows: unknown[] }>(sql, { tenant: scope.tenantId, cutoff, limit });
    return rows.length;
  });
}
