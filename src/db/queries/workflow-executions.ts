import type { Knex } from "knex";
import { raw } from "objection";
import { type ExecutionRow, WorkflowExecutionModel } from "../models/workflow-execution.js";
import { ExecutionLeaseModel, type LeaseColumns } from "../models/execution-lease.js";
import { jsonAttributesAsText, jsonAttributesFromText, parseJsonAttributes, type RowOf } from "../models/plain-rows.js";
import { JSONB_AS_TEXT } from "../type-parsers.js";
import { PLAN_ONCE, type TenantScope } from "../../tenancy/tenant-scope.js";
import type { BoundedRows } from "../../limits/byte-budget.js";
import { byteBounded, type RowLimits } from "./byte-bounded.js";
import { type GivenFilters, whereGiven } from "./filters.js";

export type { RowLimits } from "./byte-bounded.js";

// Every SQL statement of WorkflowStateService. Each function takes the call's
// TenantScope and filters or writes tenant_id from it; none takes a bare Knex.

const INCOMPLETE = ["PENDING", "RUNNING", "BLOCKED"];
const TERMINAL = ["COMPLETED", "FAILED", "CANCELLED"];

// An execution's lease lives in execution_leases (migration 20261205200000);
// every read that returns executions joins it, its columns aliased to the
// names the handlers read (LeaseColumns). USING keeps tenant_id and
// execution_id unqualified, so filters and keysets name them as before.
/** The executions with their leases, for FROM. */
export const EXECUTIONS_WITH_LEASES = "workflow_executions LEFT JOIN execution_leases AS lease USING (tenant_id, execution_id)";
/** The lease's columns of a read joining execution_leases AS `lease`. */
export const LEASE_COLUMNS = "lease.owner AS lease_owner, lease.token AS lease_token, lease.expire_time AS lease_expire_time";
/**
 * The JSON columns that the reads of one execution, of pages and of streams
 * keep as PostgreSQL's text (JSONB_AS_TEXT; a JsonText in the row): the
 * stream's encoder writes a context's Struct straight from its text, where
 * parsing it and walking the parsed object were much of a streamed row's time
 * (docs/performance.md, "The context as text").
 */
const KEEP_TEXT = ["context"];
const NO_LEASE: LeaseColumns = { lease_owner: null, lease_token: null, lease_expire_time: null };
/**
 * The lease's columns of the row a statement writes (workflow_executions AS
 * `t`), for its RETURNING list: a writing statement cannot join, and wrapped
 * in a CTE it would no longer read (and trace) as the INSERT or UPDATE it is.
 */
const leaseOfWritten = (t: string) =>
  (["owner", "token", "expire_time"] as const)
    .map((c) => `(SELECT lease.${c} FROM execution_leases AS lease WHERE lease.tenant_id = ${t}.tenant_id AND lease.execution_id = ${t}.execution_id) AS lease_${c}`)
    .join(", ");

/** The columns a save writes (see executionToColumns). JSON columns are plain objects. */
export type ExecutionColumns = Pick<
  RowOf<WorkflowExecutionModel>,
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
 *
 * The lease returned with an incomplete execution is read in the same
 * statement (in its RETURNING list), so as of its start: a claim that committed while this save
 * waited for the row shows in the next read, not in this answer (the save
 * does not change the lease either way). A terminal save ends the lease in a
 * second statement, whose snapshot is taken after the upsert holds the row:
 * any claim of it committed before that is seen and ended, and no claim can
 * take the row until this transaction ends (claims lock it, see
 * execution-leases.ts).
 */
export async function upsertExecution(scope: TenantScope, input: SaveInput): Promise<ExecutionRow> {
  const work = async (db: Knex): Promise<ExecutionRow> => {
    const upsert = `INSERT INTO workflow_executions AS t
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
         version = nextval('row_version_seq'),
         update_time = now()
       RETURNING t.*${input.terminal ? "" : `, ${leaseOfWritten("t")}`}`;
    const { rows } = await db.raw<{ rows: ExecutionRow[] }>(
      upsert,
      {
        tenant: scope.tenantId,
        ...jsonAttributesAsText(WorkflowExecutionModel, input.columns),
        started_at: input.startedAt,
        completed_at: input.completedAt,
        terminal: input.terminal,
        legal_hold: input.legalHold ?? null,
      },
    ).options(PLAN_ONCE);
    const row = rows[0]!;
    if (input.terminal) {
      await endLease(db, scope.tenantId, row.execution_id);
      Object.assign(row, NO_LEASE);
    }
    // A plain row (see findExecution).
    return parseJsonAttributes(WorkflowExecutionModel, row);
  };
  return input.terminal ? scope.transaction(work) : scope.run(work);
}

/** Ends the lease of an execution, if it has one (a terminal save). */
async function endLease(db: Knex, tenantId: string, executionId: string): Promise<void> {
  await db(ExecutionLeaseModel.tableName).where({ tenant_id: tenantId, execution_id: executionId }).delete().options(PLAN_ONCE);
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
 * updates serialize: of several from the same version, exactly one matches.
 * A terminal status ends the lease, in a second statement of the same
 * transaction (see upsertExecution for why not in the first).
 *
 * With a fencing token, the save and any claim of the execution serialize:
 * first one statement locks the execution row (FOR NO KEY UPDATE, the lock
 * its UPDATE takes anyway) and then the lease row, if it is still the named,
 * unexpired lease (FOR SHARE). The lease is checked under its lock, not in a
 * subquery of the UPDATE: under READ COMMITTED a subquery on another table is
 * not re-checked after a wait, so a claim committed meanwhile would go
 * unseen. Holding both, no claim can replace the lease before this commits (a
 * claim locks the execution row first, skipping it while held, and then
 * writes the lease row), and a claim committed before is seen: the lease row
 * is re-checked at its newest version once locked, or was not there to find.
 * Execution row before lease row, the order claims lock them in, so the two
 * never deadlock: the execution row is read in a MATERIALIZED CTE, which the
 * join reads before the lease row can be locked above it.
 */
export async function updateExecutionIf(
  scope: TenantScope,
  input: SaveInput,
  condition: SaveCondition,
): Promise<ExecutionRow | undefined> {
  const { execution_id, ...columns } = input.columns;
  const patch = (db: Knex) => {
    const q = WorkflowExecutionModel.query(db).where({ tenant_id: scope.tenantId, execution_id });
    if (condition.version !== undefined) q.where("version", condition.version);
    // The JSON columns go as objects: the model writes them as JSON text.
    q.patch({
        ...columns,
        started_at: raw("COALESCE(?::timestamptz, started_at)", [input.startedAt]),
        completed_at: input.terminal ? raw("COALESCE(?::timestamptz, completed_at, now())", [input.completedAt]) : null,
        ...(input.legalHold === undefined ? {} : { legal_hold: input.legalHold }),
        version: raw("nextval('row_version_seq')"),
        update_time: raw("now()"),
      });
    return q.toKnexQuery();
  };
  if (condition.fencingToken === undefined && !input.terminal) {
    // Nothing to check or end of the lease: one statement, returning the
    // lease as of its start (as upsertExecution does).
    return scope.run(async (db) => {
      const rows = await patch(db).returning<ExecutionRow[]>(["*", db.raw(leaseOfWritten(WorkflowExecutionModel.tableName))]);
      const row = rows[0];
      return row === undefined ? undefined : parseJsonAttributes(WorkflowExecutionModel, row);
    });
  }
  return scope.transaction(async (db) => {
    let lease: LeaseColumns | undefined;
    if (condition.fencingToken !== undefined) {
      const { rows } = await db.raw<{ rows: LeaseColumns[] }>(
        `WITH execution AS MATERIALIZED (
           SELECT 1 FROM workflow_executions WHERE tenant_id = :tenant AND execution_id = :execution_id FOR NO KEY UPDATE
         )
         SELECT ${LEASE_COLUMNS} FROM execution, execution_leases AS lease
         WHERE lease.tenant_id = :tenant AND lease.execution_id = :execution_id
           AND lease.token = :token AND lease.expire_time > now()
         FOR SHARE OF lease`,
        { tenant: scope.tenantId, execution_id, token: condition.fencingToken },
      );
      if (rows.length === 0) return undefined;
      lease = rows[0];
    }
    const row = (await patch(db).returning<ExecutionRow[]>("*"))[0];
    if (row === undefined) return undefined;
    if (input.terminal) {
      await endLease(db, scope.tenantId, execution_id);
      lease = NO_LEASE;
    }
    return parseJsonAttributes(WorkflowExecutionModel, Object.assign(row, lease));
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
      `SELECT 1 FROM execution_leases
       WHERE tenant_id = ? AND execution_id = ? AND token = ? AND expire_time > now()`,
      [scope.tenantId, executionId, fencingToken],
    ).options(PLAN_ONCE);
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
      `SELECT workflow_executions.*, ${LEASE_COLUMNS} FROM ${EXECUTIONS_WITH_LEASES} WHERE tenant_id = ? AND execution_id = ?`,
      [scope.tenantId, executionId],
    ).options({ ...PLAN_ONCE, ...JSONB_AS_TEXT });
    const row = rows[0];
    return row === undefined ? undefined : executionFromText(row);
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
    const q = whereGiven(
      db.from(db.raw(EXECUTIONS_WITH_LEASES)).select(db.raw(`workflow_executions.*, ${LEASE_COLUMNS}`)).where("tenant_id", scope.tenantId),
      filters,
    );
    if (after !== undefined) q.whereRaw(`(started_at, execution_id) ${order === "newest" ? "<" : ">"} (?::timestamptz, ?)`, after);
    return byteBounded<WorkflowExecutionModel, ExecutionRow>(db, WorkflowExecutionModel, q, order === "newest" ? NEWEST_FIRST : OLDEST_FIRST, limits, KEEP_TEXT);
  });
}

/**
 * An execution row read with JSONB_AS_TEXT (findExecution's, and the claim
 * batch's in execution-leases.ts; byteBounded does the same for pages and
 * streams): the KEEP_TEXT columns stay text, the other JSON columns are parsed.
 */
export function executionFromText(row: ExecutionRow): ExecutionRow {
  return jsonAttributesFromText(WorkflowExecutionModel, row, KEEP_TEXT);
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
