import type { Knex } from "knex";
import { type DecisionRow, RoutingDecisionModel } from "../models/routing-decision.js";
import { RoutingDecisionIdModel } from "../models/routing-decision-id.js";
import { parseJsonAttributes } from "../models/plain-rows.js";
import { PLAN_ONCE, type TenantScope } from "../../tenancy/tenant-scope.js";
import type { BoundedRows } from "../../limits/byte-budget.js";
import { byteBounded, type RowLimits } from "./byte-bounded.js";
import { whereGiven } from "./filters.js";
import { ADD_OUTCOMES_LOCK_SQL, addOutcomesSql } from "./agent-statistics.js";

// Every SQL statement of RoutingAuditService. Each function takes the call's
// TenantScope and filters or writes tenant_id from it; none takes a bare Knex.
// Decisions are appended and deleted, never updated.

/** The columns a recording writes (see decisionToColumns); tenant and create_time are the query's. */
export interface DecisionColumns {
  decision_id: string;
  task_id: string;
  task_type: string;
  required_capability: string;
  selected_agent: string;
  priority: number;
  agent_score: number;
  candidates: { agent_key: string; score: number }[];
  success: boolean;
  error_message: string;
  retry_attempts: number;
  routing_duration_us: number;
  task_duration_us: number;
  /** ISO-8601 UTC with microseconds. */
  routed_at: string;
  workflow_execution_id: string;
  step_id: string;
  content_hash: string;
}

/**
 * Decision ids that are already stored with other content; thrown inside the
 * recording transaction, which it rolls back. `indexes` are positions in the
 * recorded list.
 */
export class DecisionIdConflict extends Error {
  constructor(readonly indexes: number[]) {
    super(`decision ids stored with different content at ${indexes.join(", ")}`);
    this.name = "DecisionIdConflict";
  }
}

// The column list of routing_decisions as jsonb_to_recordset reads it: the
// whole batch is bound as ONE jsonb parameter, whatever its size, and typed here.
const INPUT_COLUMNS = `decision_id uuid, task_id text, task_type text, required_capability text, selected_agent text,
  priority int4, agent_score float8, candidates jsonb, success boolean, error_message text, retry_attempts int4,
  routing_duration_us int8, task_duration_us int8, routed_at timestamptz, workflow_execution_id text, step_id text,
  content_hash text`;
const COLUMN_NAMES = INPUT_COLUMNS.split(",").map((c) => c.trim().split(/\s+/)[0]).join(", ");

/**
 * Stores decisions all or nothing and returns the stored rows in input order.
 * The caller guarantees distinct decision ids.
 *
 * One transaction of one or two statements (after the statistics lock, with
 * `addOutcomes`):
 * 1. one INSERT of the whole batch that skips the ids already stored (see insertNew),
 *    returning the rows it inserted, which with `addOutcomes` also adds their
 *    outcomes to agent_statistics (so a retried decision is never counted
 *    twice);
 * 2. only when some ids were already stored: a read of those ids, which (a
 *    statement of its own) sees what a concurrent recording of the same id
 *    committed, to return the stored rows and to tell a retry (same
 *    content_hash) from a reused id (different: DecisionIdConflict, rollback).
 */
export async function insertDecisions(
  scope: TenantScope,
  decisions: DecisionColumns[],
  addOutcomes: boolean,
): Promise<DecisionRow[]> {
  return scope.transaction(async (trx: Knex.Transaction) => {
    const byId = await insertNew(trx, scope.tenantId, decisions, addOutcomes);
    await addStored(trx, scope.tenantId, decisions, byId);
    const conflicts = decisions.flatMap((d, i) => (byId.get(d.decision_id)?.content_hash === d.content_hash ? [] : [i]));
    if (conflicts.length > 0) throw new DecisionIdConflict(conflicts);
    return decisions.map((d) => byId.get(d.decision_id)!);
  });
}

/**
 * Stores decisions each on its own (not all or nothing), for the group commit
 * of RecordRoutingDecision, and returns per decision its stored row, or
 * undefined when its id is stored with other content (nothing was written for
 * it). The caller guarantees distinct decision ids. The decisions are those
 * `choose` returns when the write has its connection, just before its first
 * statement (none: nothing is written): the group commit
 * (src/services/routing-audit/group-commit.ts) adds there the calls that
 * arrived while the write waited for its connection, and leaves out those
 * that gave up meanwhile.
 *
 * One statement (see insertNew; with statistics, a transaction of the
 * statistics lock and that statement). No rollback is needed when some ids
 * are stored already: the INSERT wrote only the others. Only then does a
 * second statement read the stored rows (see insertDecisions for why a
 * statement of its own).
 */
export async function insertEachDecision(
  scope: TenantScope,
  choose: () => DecisionColumns[],
  addOutcomes: boolean,
): Promise<{ decisions: DecisionColumns[]; rows: (DecisionRow | undefined)[] }> {
  const tenant = scope.tenantId;
  let decisions: DecisionColumns[] = [];
  const insert = async (db: Knex) => {
    decisions = choose();
    if (decisions.length === 0) return new Map<string, DecisionRow>();
    return insertNew(db, tenant, decisions, addOutcomes);
  };
  // Without statistics the INSERT is one statement: atomic on its own.
  const byId = addOutcomes ? await scope.transaction(insert) : await scope.run(insert);
  if (byId.size < decisions.length) await scope.run((db) => addStored(db, tenant, decisions, byId));
  return {
    decisions,
    rows: decisions.map((d) => {
      const row = byId.get(d.decision_id);
      return row?.content_hash === d.content_hash ? row : undefined;
    }),
  };
}

/**
 * The INSERT of a recording (with `addOutcomes`, in a transaction): the
 * decisions not stored yet, with (when `addOutcomes`) their outcomes added to
 * agent_statistics, so that a retried decision is never counted twice (that
 * takes the statistics lock first). Returns the inserted rows by decision id.
 *
 * routing_decisions is partitioned by routed_at, and PostgreSQL enforces a
 * unique key only if it contains the partition key: its primary key is
 * (tenant_id, decision_id, routed_at), which alone would store a reused id
 * with another routed_at a second time. routing_decision_ids holds the key
 * (tenant_id, decision_id) (migration 20261205300000): the statement first
 * inserts the ids there, ON CONFLICT DO NOTHING, and then only the decisions
 * whose id it inserted. An id a concurrent recording inserted and has not
 * committed yet makes this one wait for it, then skip the id if it committed
 * (or insert it if it rolled back): one index probe per decision, whatever
 * the number of months.
 */
async function insertNew(
  db: Knex,
  tenant: string,
  decisions: DecisionColumns[],
  addOutcomes: boolean,
): Promise<Map<string, DecisionRow>> {
  if (addOutcomes) await db.raw(ADD_OUTCOMES_LOCK_SQL, { tenant }).options(PLAN_ONCE);
  // Ids are inserted in decision_id order, so that concurrent batches sharing
  // ids wait for each other in the same order and cannot deadlock.
  const { rows: inserted } = await db.raw<{ rows: DecisionRow[] }>(
    `WITH input AS (
       SELECT * FROM jsonb_to_recordset(:rows::jsonb) AS x(${INPUT_COLUMNS})
     ), new_ids AS (
       INSERT INTO ${RoutingDecisionIdModel.tableName} (tenant_id, decision_id, routed_at)
       SELECT :tenant, decision_id, routed_at FROM input ORDER BY decision_id
       ON CONFLICT DO NOTHING
       RETURNING decision_id
     ), inserted AS (
       INSERT INTO routing_decisions (tenant_id, ${COLUMN_NAMES})
       SELECT :tenant, ${COLUMN_NAMES} FROM input WHERE decision_id IN (SELECT decision_id FROM new_ids)
       ON CONFLICT DO NOTHING
       RETURNING *
     )${
       addOutcomes
         ? `, outcomes AS (
       SELECT selected_agent AS agent_key, success, task_duration_us AS duration_us, routed_at AS task_time FROM inserted
     ), added AS (${addOutcomesSql("outcomes")})`
         : ""
     }
     SELECT * FROM inserted`,
    { tenant, rows: JSON.stringify(decisions) },
  ).options(PLAN_ONCE);
  return new Map(inserted.map((row) => [row.decision_id, parseJsonAttributes(RoutingDecisionModel, row)]));
}

/** Adds to `byId` the stored rows of the decisions the INSERT did not insert (their ids were taken). */
async function addStored(db: Knex, tenant: string, decisions: DecisionColumns[], byId: Map<string, DecisionRow>): Promise<void> {
  const notInserted = decisions.filter((d) => !byId.has(d.decision_id)).map((d) => d.decision_id);
  if (notInserted.length === 0) return;
  const stored = await RoutingDecisionModel.query(db).where("tenant_id", tenant).whereIn("decision_id", notInserted);
  for (const row of stored) byId.set(row.decision_id, row);
}

/** Filters of listDecisions; empty strings and nulls match anything. */
export interface ListFilters {
  taskId: string;
  taskType: string;
  selectedAgent: string;
  workflowExecutionId: string;
  stepId: string;
  success: boolean | null;
  routedAfter: string | null;
  routedBefore: string | null;
}

/**
 * One page of decisions, newest routed_at first (decision_id breaks ties),
 * strictly after the keyset `after` = [routed_at, decision_id] of the previous
 * page's last row, within `limits` (see byteBounded); `more` tells whether a
 * next page exists. Plain rows of the model's shape.
 */
export async function listDecisions(scope: TenantScope, filters: ListFilters, after: [string, string] | undefined, limits: RowLimits): Promise<BoundedRows<DecisionRow>> {
  return scope.run(async (db) => {
    const q = whereGiven(db<DecisionRow>(RoutingDecisionModel.tableName).select("*").where("tenant_id", scope.tenantId), {
      equal: {
        task_id: filters.taskId,
        task_type: filters.taskType,
        selected_agent: filters.selectedAgent,
        workflow_execution_id: filters.workflowExecutionId,
        step_id: filters.stepId,
        success: filters.success,
      },
      range: { column: "routed_at", from: filters.routedAfter, before: filters.routedBefore },
    });
    if (after !== undefined) q.whereRaw("(routed_at, decision_id) < (?::timestamptz, ?::uuid)", after);
    return byteBounded(db, RoutingDecisionModel, q, "routed_at DESC, decision_id DESC", limits);
  });
}

/** One agent's summary row; counts and durations (microseconds) are int8 text. */
export interface SummaryRow {
  agent_key: string;
  total: string;
  successful: string;
  failed: string;
  average_us: string;
  p50_us: string;
  p95_us: string;
}

/**
 * Per selected agent, over decisions routed in [after, before): counts, the
 * mean routing duration rounded to the microsecond (numeric round: halves away
 * from zero), and nearest-rank percentiles (percentile_disc), all in one
 * aggregate query; at most `limit` agents, by agent key, after `afterAgent`.
 */
export async function summarizeByAgent(
  scope: TenantScope,
  after: string | null,
  before: string | null,
  afterAgent: string | undefined,
  limit: number,
): Promise<SummaryRow[]> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: SummaryRow[] }>(
      `SELECT selected_agent AS agent_key,
              count(*) AS total,
              count(*) FILTER (WHERE success) AS successful,
              count(*) FILTER (WHERE NOT success) AS failed,
              round(avg(routing_duration_us))::int8 AS average_us,
              percentile_disc(0.5) WITHIN GROUP (ORDER BY routing_duration_us) AS p50_us,
              percentile_disc(0.95) WITHIN GROUP (ORDER BY routing_duration_us) AS p95_us
         FROM routing_decisions
        WHERE tenant_id = :tenant
          AND routed_at >= COALESCE(:after::timestamptz, '-infinity'::timestamptz)
          AND routed_at < COALESCE(:before::timestamptz, 'infinity'::timestamptz)
          AND (:afterAgent::text IS NULL OR selected_agent > :afterAgent::text)
        GROUP BY selected_agent
        ORDER BY selected_agent
        LIMIT :limit`,
      { tenant: scope.tenantId, after, before, afterAgent: afterAgent ?? null, limit },
    );
    return rows;
  });
}

/** One time bucket's row; the bucket's index, counts and the mean task duration (microseconds) are int8 text. */
export interface TimeBucketRow {
  bucket: string;
  total: string;
  successful: string;
  failed: string;
  average_task_us: string;
}

/** Filters of summarizeByTime; empty strings match anything. */
export interface TimeBucketFilters {
  selectedAgent: string;
  taskType: string;
}

/**
 * Per bucket of `widthUs` microseconds from `after` (bucket 0 starts there),
 * over decisions routed in [after, before): counts and the mean task duration
 * rounded to the microsecond, in one aggregate query. Buckets without
 * decisions have no row. The caller bounds the number of buckets.
 */
export async function summarizeByTime(
  scope: TenantScope,
  after: string,
  before: string,
  widthUs: bigint,
  filters: TimeBucketFilters,
): Promise<TimeBucketRow[]> {
  return scope.run(async (db) => {
    // extract(epoch from interval) is numeric: exact to the microsecond.
    const { rows } = await db.raw<{ rows: TimeBucketRow[] }>(
      `SELECT floor(extract(epoch FROM routed_at - :after::timestamptz) * 1000000 / :width::int8)::int8 AS bucket,
              count(*) AS total,
              count(*) FILTER (WHERE success) AS successful,
              count(*) FILTER (WHERE NOT success) AS failed,
              round(avg(task_duration_us))::int8 AS average_task_us
         FROM routing_decisions
        WHERE tenant_id = :tenant
          AND routed_at >= :after::timestamptz
          AND routed_at < :before::timestamptz
          ${filters.selectedAgent === "" ? "" : "AND selected_agent = :agent"}
          ${filters.taskType === "" ? "" : "AND task_type = :taskType"}
        GROUP BY 1
        ORDER BY 1`,
      { tenant: scope.tenantId, after, before, width: widthUs.toString(), agent: filters.selectedAgent, taskType: filters.taskType },
    );
    return rows;
  });
}

/**
 * Deletes at most `limit` decisions routed before the cutoff (ISO string),
 * and their ids, in one statement, and returns how many decisions it deleted.
 */
export async function deleteRoutedBeforeBatch(scope: TenantScope, routedBefore: string, limit: number): Promise<number> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: { deleted: number }[] }>(
      `WITH victims AS (
         SELECT decision_id, routed_at FROM routing_decisions WHERE tenant_id = :tenant AND routed_at < :before LIMIT :limit
       ), deleted AS (
         DELETE FROM routing_decisions r USING victims v
          WHERE r.tenant_id = :tenant
            AND r.routed_at < :before -- reads only the partitions before the cutoff
            AND (r.decision_id, r.routed_at) = (v.decision_id, v.routed_at)
         RETURNING r.decision_id
       ), ids AS (
         DELETE FROM ${RoutingDecisionIdModel.tableName} WHERE tenant_id = :tenant AND decision_id IN (SELECT decision_id FROM deleted)
       )
       SELECT count(*)::int4 AS deleted FROM deleted`,
      { tenant: scope.tenantId, before: routedBefore, limit },
    );
    return rows[0]!.deleted;
  });
}

/**
 * Deletes at most `limit` ids routed before the cutoff (ISO string) whose
 * decision is not stored, and returns how many it deleted: the ids of the
 * months retention dropped whole (src/db/queries/decision-partitions.ts drops
 * a month's partition; its ids, in an unpartitioned table, go by these
 * batches, per tenant). Until then such an id is still taken: recording it
 * again answers ALREADY_EXISTS. An id and its decision are inserted by one
 * statement, so a snapshot sees both or neither: a recording in progress is
 * never taken for a missing decision.
 */
export async function deleteUnstoredDecisionIdsBatch(scope: TenantScope, routedBefore: string, limit: number): Promise<number> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: { deleted: number }[] }>(
      `WITH deleted AS (
         DELETE FROM ${RoutingDecisionIdModel.tableName} WHERE tenant_id = :tenant AND decision_id IN (
           SELECT i.decision_id FROM ${RoutingDecisionIdModel.tableName} i
            WHERE i.tenant_id = :tenant AND i.routed_at < :before
              AND NOT EXISTS (SELECT FROM routing_decisions r WHERE r.tenant_id = :tenant AND r.decision_id = i.decision_id AND r.routed_at = i.routed_at)
            LIMIT :limit)
         RETURNING 1
       )
       SELECT count(*)::int4 AS deleted FROM deleted`,
      { tenant: scope.tenantId, before: routedBefore, limit },
    );
    return rows[0]!.deleted;
  });
}
