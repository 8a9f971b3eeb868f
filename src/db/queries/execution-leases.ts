import type { ExecutionRow } from "../models/workflow-execution.js";
import type { TenantScope } from "../../tenancy/tenant-scope.js";
import type { BoundedRows } from "../../limits/byte-budget.js";
import { dropTrailingColumns } from "../models/plain-rows.js";
import { JSONB_AS_TEXT } from "../type-parsers.js";
import { executionFromText, LEASE_COLUMNS, type RowLimits } from "./workflow-executions.js";

/** The columns a claim batch adds to each row it returns, last, taken off before the rows are handed on. */
const CLAIM_HELPER_COLUMNS = ["locked_count", "claim_order"] as const;

// The SQL of leases on workflow executions: ClaimIncompleteWorkflows,
// RenewLeases, ReleaseLeases (the fenced save is in workflow-executions.ts).
// A lease is a row of execution_leases (migration 20261205200000); releasing
// one deletes it. Lease times are the database's clock (now()), the one clock
// every replica shares; fencing tokens come from row_version_seq (see
// migration 20261204010000).

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
 * One statement, so one transaction of the tenant. The lease is a row of
 * execution_leases (migration 20261205200000): a claim writes that narrow row,
 * not the execution's (a rewrite of the whole execution row, never HOT, five
 * index entries, cost about 5 times the WAL; docs/performance.md, B6). The
 * row lock on the execution is still a write of its tuple header, and so, on
 * a heap page not written since the last checkpoint, of the whole page to the
 * WAL: about seven eighths of the WAL of a claim over many executions, and a
 * third of its batches' time (docs/performance.md, "What a claim writes").
 *
 * Why it is exactly-once:
 * - Claimers skip each other on the execution rows: the candidates are locked
 *   `FOR NO KEY UPDATE SKIP LOCKED` (a row lock only, no new row version), so
 *   a concurrent claimer (on this server or another) skips the rows this one
 *   holds instead of waiting, and the batches of claimers running at once are
 *   disjoint. NO KEY UPDATE is the lock a save's UPDATE takes: a claim skips
 *   an execution being saved, and a fenced save locks the execution row before
 *   checking its lease (workflow-executions.ts updateExecutionIf), so no claim
 *   replaces a lease a save is writing under. (Measured against FOR UPDATE on
 *   1,000-row batches: no difference; KEY SHARE would not make claimers skip
 *   each other, shared locks do not conflict.)
 * - The lease row decides: a claim that found no live lease in its snapshot
 *   may lock an execution right after another claim of it committed (a row
 *   lock leaves no new version to re-check, unlike the old UPDATE). Its INSERT
 *   ... ON CONFLICT DO UPDATE ... WHERE expired then meets that claim's lease
 *   row, which ON CONFLICT reads at its newest committed version (under the
 *   row's lock) whatever the snapshot, finds it live and leaves it: the row is
 *   locked but not claimed. A first lease of an execution is inserted; a
 *   concurrent insert of the same key waits for the first and then takes the
 *   conflict path.
 * - Locked but not claimed rows are counted (`locked_count`, returned on a row
 *   of its own when nothing was claimed), so `more` stays true and the next
 *   batch, whose snapshot sees that lease, walks on past them.
 *
 * The byte budget is applied after the lock (PostgreSQL allows no window
 * function with FOR UPDATE); rows locked past it are unlocked unclaimed at
 * commit, and come first in the next batch. The rows returned are the locked
 * versions (a save committed while this claim waited shows), not re-read.
 */
export async function claimBatch(scope: TenantScope, input: ClaimInput, limits: RowLimits): Promise<BoundedRows<ExecutionRow>> {
  return scope.run(async (db) => {
    const byName = input.workflowName === "" ? "" : "AND e.workflow_name = :workflow_name";
    const after = input.after === undefined ? "" : "AND (e.started_at, e.execution_id) > (:after_started::timestamptz, :after_id)";
    // Each claimed row, with the count; or one row of nulls but the count, when none was claimed.
    const { rows } = await db.raw<{ rows: ((ExecutionRow & { locked_count?: string; claim_order?: string }) | { execution_id: null; locked_count: string })[] }>(
      `WITH locked AS (
         SELECT e.* FROM workflow_executions AS e
         LEFT JOIN execution_leases AS lease ON lease.tenant_id = e.tenant_id AND lease.execution_id = e.execution_id
         WHERE e.tenant_id = :tenant AND e.status IN ('PENDING', 'RUNNING', 'BLOCKED') ${byName} ${after}
           AND (lease.expire_time IS NULL OR lease.expire_time <= now())
         ORDER BY e.started_at, e.execution_id
         LIMIT :rows
         FOR NO KEY UPDATE OF e SKIP LOCKED
       ), picked AS (
         SELECT execution_id, n FROM (
           SELECT execution_id, row_number() OVER w AS n, sum(stored_bytes) OVER w AS through
           FROM locked
           WINDOW w AS (ORDER BY started_at, execution_id ROWS UNBOUNDED PRECEDING)
         ) AS s
         WHERE n = 1 OR through <= :bytes
       ), claimed AS (
         INSERT INTO execution_leases AS lease (tenant_id, execution_id, owner, token, expire_time)
         SELECT :tenant, execution_id, :owner, nextval('row_version_seq'),
                now() + :lease_ms::double precision * interval '1 millisecond'
         FROM picked
         ORDER BY n
         ON CONFLICT (tenant_id, execution_id) DO UPDATE
           SET owner = EXCLUDED.owner, token = EXCLUDED.token, expire_time = EXCLUDED.expire_time
           WHERE lease.expire_time <= now()
         RETURNING lease.*
       )
       SELECT locked.*, ${LEASE_COLUMNS}, counted.locked_count, picked.n AS claim_order -- CLAIM_HELPER_COLUMNS, last
       FROM (SELECT count(*) AS locked_count FROM locked) AS counted
       LEFT JOIN (claimed AS lease JOIN picked USING (execution_id) JOIN locked USING (execution_id)) ON true`,
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
      // The context as jsonb's text, written straight into the answer, as the stream's reads do.
    ).options(JSONB_AS_TEXT);
    const locked = rows.length === 0 ? 0 : Number(rows[0]!.locked_count);
    // In claim order, sorted here by their rank in the batch: an ORDER BY of
    // the statement would sort the whole rows (CTE scans carry no order), a
    // copy of every claimed execution in PostgreSQL (19 ms against 15.5 for
    // a batch of 300; docs/performance.md, "The claim's own sort").
    const ranked: { order: number; row: ExecutionRow }[] = [];
    for (const row of rows) {
      if (row.execution_id === null) continue;
      const order = Number(row.claim_order);
      dropTrailingColumns(row, CLAIM_HELPER_COLUMNS);
      ranked.push({ order, row: executionFromText(row) });
    }
    const claimed = ranked.sort((a, b) => a.order - b.order).map((r) => r.row);
    // LIMIT counts only rows locked and still claimable in the snapshot, so
    // fewer than the limit means the walk reached the end; fewer claimed than
    // locked means some were left past the byte budget, or were claimed by
    // another claimer meanwhile.
    return { rows: claimed, more: locked === limits.rows || claimed.length < locked };
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
      `UPDATE execution_leases AS t
       SET expire_time = now() + ?::double precision * interval '1 millisecond'
       FROM jsonb_to_recordset(?::jsonb) AS h(execution_id text, token bigint)
       WHERE t.tenant_id = ? AND t.execution_id = h.execution_id AND t.token = h.token
       RETURNING t.execution_id, t.token AS lease_token, t.expire_time AS lease_expire_time`,
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
      `DELETE FROM execution_leases AS t
       USING jsonb_to_recordset(?::jsonb) AS h(execution_id text, token bigint)
       WHERE t.tenant_id = ? AND t.execution_id = h.execution_id AND t.token = h.token
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
