import type { ExecutionRow } from "../models/workflow-execution.js";
import type { TenantScope } from "../../tenancy/tenant-scope.js";
import type { BoundedRows } from "../../limits/byte-budget.js";
import { parseJsonColumns, type RowLimits } from "./workflow-executions.js";

// The SQL of leases on workflow executions: ClaimIncompleteWorkflows,
// RenewLeases, ReleaseLeases (the fenced save is in workflow-executions.ts).
// Lease times are the database's clock (now()), the one clock every replica
// shares; fencing tokens come from row_version_seq (see migration
// 20261204010000).

/** What one claim batch claims, and for whom. */
export interface ClaimInput {
  owner: string;
  /** Lease lifetime from the claim, in milliseconds. */
  leaseMs: number;
  /** Only this workflow; empty: every workflow. */
  workflowName: string;
  /** Keyset [started_at, execution_id] of the last row claimed before; undefined: from the start. */
  after: [string, string] | undefined;
}

/** A lease a caller names: its execution and fencing token (decimal text). */
export interface LeaseRef {
  executionId: string;
  fencingToken: string;
}

/**
 * Claims one batch for `input.owner`: the first incomplete executions after
 * `input.after` (oldest started_at first, execution_id breaking ties) without
 * a live lease, at most `limits.rows` of them and, beyond the first,
 * `limits.bytes` of their stored sizes; each gets a new lease (a fresh fencing
 * token, expiring `leaseMs` from now). Returns them in that order, with their
 * leases; `more` when executions after them may be claimable.
 *
 * One statement, so one transaction of the tenant: the candidate rows are
 * locked `FOR UPDATE SKIP LOCKED`, so a concurrent claimer (on this server or
 * another) skips the rows this one is claiming instead of waiting for them,
 * and a row whose lease another claim committed meanwhile is re-checked
 * against its new lease and left out. The byte budget is applied after the
 * lock (PostgreSQL allows no window function with FOR UPDATE); rows locked
 * past it are unlocked unclaimed at commit, and come first in the next batch.
 */
export async function claimBatch(scope: TenantScope, input: ClaimInput, limits: RowLimits): Promise<BoundedRows<ExecutionRow>> {
  return scope.run(async (db) => {
    const byName = input.workflowName === "" ? "" : "AND workflow_name = :workflow_name";
    const after = input.after === undefined ? "" : "AND (started_at, execution_id) > (:after_started::timestamptz, :after_id)";
    const { rows } = await db.raw<{ rows: (ExecutionRow & { locked_count?: string })[] }>(
      `WITH locked AS (
         SELECT execution_id, started_at, stored_bytes FROM workflow_executions
         WHERE tenant_id = :tenant AND status IN ('PENDING', 'RUNNING', 'BLOCKED') ${byName} ${after}
           AND (lease_expire_time IS NULL OR lease_expire_time <= now())
         ORDER BY started_at, execution_id
         LIMIT :rows
         FOR UPDATE SKIP LOCKED
       ), picked AS (
         SELECT execution_id FROM (
           SELECT execution_id, row_number() OVER w AS n, sum(stored_bytes) OVER w AS through
           FROM locked
           WINDOW w AS (ORDER BY started_at, execution_id ROWS UNBOUNDED PRECEDING)
         ) AS s
         WHERE n = 1 OR through <= :bytes
       ), claimed AS (
         UPDATE workflow_executions AS t
         SET lease_owner = :owner,
             lease_token = nextval('row_version_seq'),
             lease_expire_time = now() + :lease_ms::double precision * interval '1 millisecond'
         FROM picked
         WHERE t.tenant_id = :tenant AND t.execution_id = picked.execution_id
         RETURNING t.*
       )
       SELECT claimed.*, (SELECT count(*) FROM locked) AS locked_count
       FROM claimed
       ORDER BY started_at, execution_id`,
      {
        tenant: scope.tenantId,
        workflow_name: input.workflowName,
        after_started: input.after?.[0] ?? null,
        after_id: input.after?.[1] ?? null,
        rows: limits.rows,
        bytes: limits.bytes,
        owner: input.owner,
        lease_ms: input.leaseMs,
      },
    );
    const locked = rows.length === 0 ? 0 : Number(rows[0]!.locked_count);
    for (const row of rows) {
      delete row.locked_count;
      parseJsonColumns(row);
    }
    // LIMIT counts only rows locked and still claimable, so fewer than the
    // limit means the walk reached the end.
    return { rows, more: locked === limits.rows || rows.length < locked };
  });
}

/** A renewed lease: its execution, token and new expiry. */
export interface RenewedLease {
  execution_id: string;
  lease_token: string;
  lease_expire_time: string;
}

/**
 * Extends each of `leases` that is still its execution's current lease (its
 * token is the stored one, expired or not) to `leaseMs` from now, and returns
 * those renewed; the others were lost.
 */
export async function renewLeases(scope: TenantScope, leases: readonly LeaseRef[], leaseMs: number): Promise<RenewedLease[]> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: RenewedLease[] }>(
      `UPDATE workflow_executions AS t
       SET lease_expire_time = now() + ?::double precision * interval '1 millisecond'
       FROM jsonb_to_recordset(?::jsonb) AS h(execution_id text, token bigint)
       WHERE t.tenant_id = ? AND t.execution_id = h.execution_id AND t.lease_token = h.token
       RETURNING t.execution_id, t.lease_token, t.lease_expire_time`,
      [leaseMs, leasesJson(leases), scope.tenantId],
    );
    return rows;
  });
}

/** Ends each of `leases` that is still its execution's current lease; returns how many it ended. */
export async function releaseLeases(scope: TenantScope, leases: readonly LeaseRef[]): Promise<number> {
  if (leases.length === 0) return 0;
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: unknown[] }>(
      `UPDATE workflow_executions AS t
       SET lease_owner = NULL, lease_token = NULL, lease_expire_time = NULL
       FROM jsonb_to_recordset(?::jsonb) AS h(execution_id text, token bigint)
       WHERE t.tenant_id = ? AND t.execution_id = h.execution_id AND t.lease_token = h.token
       RETURNING t.execution_id`,
      [leasesJson(leases), scope.tenantId],
    );
    return rows.length;
  });
}

/** Leases as the JSON array the statements read with jsonb_to_recordset (tokens as JSON numbers are exact in PostgreSQL). */
function leasesJson(leases: readonly LeaseRef[]): string {
  return `[${leases.map((l) => `{"execution_id":${JSON.stringify(l.executionId)},"token":${l.fencingToken}}`).join(",")}]`;
}
