import { raw } from "objection";
import { type ExecutionRow, WorkflowExecutionModel } from "../models/workflow-execution.js";
import { jsonAttributesAsText, parseJsonAttributes } from "../models/plain-rows.js";
import type { TenantScope } from "../../tenancy/tenant-scope.js";
import type { BoundedRows } from "../../limits/byte-budget.js";
import { byteBounded, type RowLimits } from "./byte-bounded.js";
import { type GivenFilters, whereGiven } from "./filters.js";

export type { RowLimits } from "./byte-bounded.js";

// Every SQL statement of WorkflowStateService. Each function takes the call's
// TenantScope and filters or writes tenant_id from it; none takes a bare Knex.

const INCOMPLETE = ["PENDING", "RUNNING", "BLOCKED"];
const TERMINAL = ["COMPLETED", "FAILED", "CANCELLED"];

/** The columns a save writes (see executionToColumns). JSON columns are plain objects. */
export type ExecutionColumns = Pick<
  ExecutionRow,
  | "execution_id"
  | "workflow_name"
  | "status"
  | "definition"
  | "context"
  | "step_executions"
  | "step_outputs"
  | "error_message"
  | "initiated_by"
  | "labels"
>;

/** What a save writes besides the columns: client times (ISO strings, or null when unset). */
export interface SaveInput {
  columns: ExecutionColumns;
  startedAt: string | null;
  completedAt: string | null;
  terminal: boolean;
  /** The legal hold to set; undefined keeps the stored one (false for a new execution). */
  legalHold?: boolean | undefined;
}

/**
 * Creates or replaces an execution unconditionally (last writer wins) and
 * returns the stored row. `started_at` keeps its stored value when the client
 * leaves it unset; `completed_at` defaults to now() for terminal statuses and
 * is cleared for incomplete ones. A terminal status ends the lease; any other
 * keeps it. Every write takes a new version from row_version_seq (an insert
 * by the column's default), so versions never repeat.
 */
export async function upsertExecution(scope: TenantScope, input: SaveInput): Promise<ExecutionRow> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: ExecutionRow[] }>(
      `INSERT INTO workflow_executions AS t
         (tenant_id, execution_id, workflow_name, status, definition, context, step_executions, step_outputs,
          error_message, initiated_by, labels, started_at, completed_at, legal_hold)
       VALUES (:tenant, :execution_id, :workflow_name, :status, :definition, :context, :step_executions, :step_outputs,
          :error_message, :initiated_by, :labels,
          COALESCE(:started_at::timestamptz, now()),
          CASE WHEN :terminal THEN COALESCE(:completed_at::timestamptz, now()) END,
          COALESCE(:legal_hold::boolean, false))
       ON CONFLICT (tenant_id, execution_id) DO UPDATE SET
         workflow_name = EXCLUDED.workflow_name, status = EXCLUDED.status, definition = EXCLUDED.definition,
         context = EXCLUDED.context, step_executions = EXCLUDED.step_executions, step_outputs = EXCLUDED.step_outputs,
         error_message = EXCLUDED.error_message, initiated_by = EXCLUDED.initiated_by, labels = EXCLUDED.labels,
         started_at = COALESCE(:started_at::timestamptz, t.started_at),
         completed_at = CASE WHEN :terminal THEN COALESCE(:completed_at::timestamptz, t.completed_at, now()) END,
         legal_hold = COALESCE(:legal_hold::boolean, t.legal_hold),
         lease_owner = CASE WHEN :terminal THEN NULL ELSE t.lease_owner END,
         lease_token = CASE WHEN :terminal THEN NULL ELSE t.lease_token END,
         lease_expire_time = CASE WHEN :terminal THEN NULL ELSE t.lease_expire_time END,
         version = nextval('row_version_seq'),
         update_time = now()
       RETURNING *`,
      {
        tenant: scope.tenantId,
        ...jsonAttributesAsText(WorkflowExecutionModel, input.columns),
        started_at: input.startedAt,
        completed_at: input.completedAt,
        terminal: input.terminal,
        legal_hold: input.legalHold ?? null,
      },
    );
    // A plain row (see findExecution).
    return parseJsonAttributes(WorkflowExecutionModel, rows[0]!);
  });
}

/** What a conditional save requires of the stored execution (see updateExecutionIf). */
export interface SaveCondition {
  /** Its version (from the etag); undefined: any. */
  version?: string | undefined;
  /** The fencing token of its current, unexpired lease; undefined: no lease needed. */
  fencingToken?: string | undefined;
}

/**
 * Replaces an execution only if it meets `condition` (its version; its current
 * lease's token, unexpired), and returns the stored row; undefined when the
 * execution does not exist or does not meet it. The row lock makes concurrent
 * updates serialize: of several from the same version (or against a lease and
 * a claim), exactly one matches. A terminal status ends the lease.
 */
export async function updateExecutionIf(
  scope: TenantScope,
  input: SaveInput,
  condition: SaveCondition,
): Promise<ExecutionRow | undefined> {
  return scope.run(async (db) => {
    const { execution_id, ...columns } = input.columns;
    const q = WorkflowExecutionModel.query(db).where({ tenant_id: scope.tenantId, execution_id });
    if (condition.version !== undefined) q.where("version", condition.version);
    if (condition.fencingToken !== undefined) q.where("lease_token", condition.fencingToken).whereRaw("lease_expire_time > now()");
    // The JSON columns go as objects: the model writes them as JSON text.
    const rows = await q
      .patch({
        ...columns,
        started_at: raw("COALESCE(?::timestamptz, started_at)", [input.startedAt]),
        completed_at: input.terminal ? raw("COALESCE(?::timestamptz, completed_at, now())", [input.completedAt]) : null,
        ...(input.legalHold === undefined ? {} : { legal_hold: input.legalHold }),
        ...(input.terminal ? { lease_owner: null, lease_token: null, lease_expire_time: null } : {}),
        version: raw("nextval('row_version_seq')"),
        update_time: raw("now()"),
      })
      .returning("*");
    return rows[0];
  });
}

/**
 * Whether `fencingToken` is the current, unexpired lease of an execution (a
 * fenced save that changed nothing tells a lost lease from an etag mismatch
 * with it).
 */
export async function holdsLease(scope: TenantScope, executionId: string, fencingToken: string): Promise<boolean> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: unknown[] }>(
      `SELECT 1 FROM workflow_executions
       WHERE tenant_id = ? AND execution_id = ? AND lease_token = ? AND lease_expire_time > now()`,
      [scope.tenantId, executionId, fencingToken],
    );
    return rows.length > 0;
  });
}

/** One execution of the tenant, or undefined. */
export async function findExecution(scope: TenantScope, executionId: string): Promise<ExecutionRow | undefined> {
  // A plain row, as the stream reads them: building a model (Objection's query
  // builder and fromDatabaseJson) was a visible part of a call's CPU, and the
  // row is only encoded into the answer.
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: ExecutionRow[] }>(
      "SELECT * FROM workflow_executions WHERE tenant_id = ? AND execution_id = ?",
      [scope.tenantId, executionId],
    );
    const row = rows[0];
    return row === undefined ? undefined : parseJsonAttributes(WorkflowExecutionModel, row);
  });
}

/** Filters of listExecutions. */
export interface ListFilters {
  workflowName: string;
  statuses: string[];
  startedAfter: string | null;
  startedBefore: string | null;
}

const NEWEST_FIRST = "started_at DESC, execution_id DESC";
const OLDEST_FIRST = "started_at, execution_id";

/**
 * One page of executions, newest started_at first (execution_id breaks ties),
 * strictly after the keyset `after` = [started_at, execution_id] of the
 * previous page's last row, within `limits` (see byteBounded); `more` tells
 * whether a next page exists.
 */
export async function listExecutions(scope: TenantScope, filters: ListFilters, after: [string, string] | undefined, limits: RowLimits): Promise<BoundedRows<ExecutionRow>> {
  const given = {
    equal: { workflow_name: filters.workflowName },
    in: { status: filters.statuses },
    range: { column: "started_at", from: filters.startedAfter, before: filters.startedBefore },
  };
  return executionsAfter(scope, given, "newest", after, limits);
}

/**
 * One batch of incomplete executions, oldest started_at first (execution_id
 * breaks ties), strictly after the keyset `after`, within `limits`. Served by
 * the partial indexes on incomplete rows.
 *
 * The streaming hot path: plain rows as the driver returns them, without
 * Objection's model instances (the rows are converted once, straight to the
 * response, and dropped).
 */
export async function incompleteExecutionsBatch(scope: TenantScope, workflowName: string, after: [string, string] | undefined, limits: RowLimits): Promise<BoundedRows<ExecutionRow>> {
  return executionsAfter(scope, { equal: { workflow_name: workflowName }, in: { status: INCOMPLETE } }, "oldest", after, limits);
}

/**
 * The tenant's executions matching `filters`, `order` by started_at
 * (execution_id breaks ties), strictly after the keyset `after`, within
 * `limits`: plain rows (see byteBounded).
 */
async function executionsAfter(
  scope: TenantScope,
  filters: GivenFilters,
  order: "newest" | "oldest",
  after: [string, string] | undefined,
  limits: RowLimits,
): Promise<BoundedRows<ExecutionRow>> {
  return scope.run(async (db) => {
    const q = whereGiven(db<ExecutionRow>(WorkflowExecutionModel.tableName).select("*").where("tenant_id", scope.tenantId), filters);
    if (after !== undefined) q.whereRaw(`(started_at, execution_id) ${order === "newest" ? "<" : ">"} (?::timestamptz, ?)`, after);
    return byteBounded(db, WorkflowExecutionModel, q, order === "newest" ? NEWEST_FIRST : OLDEST_FIRST, limits);
  });
}

/** parseJsonAttributes of an execution row (the claim batch's rows, in execution-leases.ts). */
export function parseJsonColumns(row: ExecutionRow): void {
  parseJsonAttributes(WorkflowExecutionModel, row);
}

/** Filters of deleteTerminalBatch. */
export interface DeleteFilters {
  completedBefore: string;
  workflowName: string;
  /** Terminal statuses to delete; empty means all three. */
  statuses: string[];
}

/**
 * Deletes at most `limit` terminal executions completed before the cutoff and
 * returns how many it deleted. The status and legal hold filters are applied
 * in SQL whatever the caller passes, so neither an incomplete execution nor
 * one under legal hold can ever be deleted here (retention deletes through
 * this function too).
 */
export async function deleteTerminalBatch(scope: TenantScope, filters: DeleteFilters, limit: number): Promise<number> {
  return scope.run(async (db) => {
    const statuses = filters.statuses.length > 0 ? filters.statuses.filter((s) => TERMINAL.includes(s)) : TERMINAL;
    const victims = db<ExecutionRow>(WorkflowExecutionModel.tableName)
      .select("execution_id")
      .where("tenant_id", scope.tenantId)
      .whereIn("status", statuses)
      .where("completed_at", "<", filters.completedBefore)
      .where("legal_hold", false)
      .limit(limit);
    if (filters.workflowName !== "") victims.where("workflow_name", filters.workflowName);
    const deleted: unknown = await WorkflowExecutionModel.query(db)
      .where("tenant_id", scope.tenantId)
      .whereIn("status", statuses)
      .where("legal_hold", false)
      .whereIn("execution_id", victims)
      .delete();
    // The caller loops until a batch comes back short: a non-number here would loop forever.
    if (typeof deleted !== "number") throw new Error(`DELETE returned ${typeof deleted}, not a row count`);
    return deleted;
  });
}
