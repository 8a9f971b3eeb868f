import type { Knex } from "knex";
import { AgentStatisticsModel, type StatisticsRow } from "../models/agent-statistics.js";
import { PLAN_ONCE, type TenantScope } from "../../tenancy/tenant-scope.js";

// Every SQL statement of StatisticsService, plus the two pieces of SQL that
// RoutingAuditService's recordings with `update_statistics` run inside their
// own transaction (addOutcomesSql, ADD_OUTCOMES_LOCK_SQL), so that there is one
// definition of "add outcomes to the counters". Each function takes the call's
// TenantScope and filters or writes tenant_id from it.

/**
 * The statement that adds outcomes to the counters, reading them from
 * `source`, a relation with columns (agent_key text, success boolean,
 * duration_us int8, task_time timestamptz) visible to the statement (a CTE).
 * Binds `:tenant`.
 *
 * One INSERT ... ON CONFLICT DO UPDATE: the increments are computed from the
 * row as it is when the row lock is taken, so concurrent statements never lose
 * an update (no read-then-write). Agents are locked in agent_key order, so two
 * transactions touching the same agents cannot deadlock.
 */
export function addOutcomesSql(source: string): string {
  return `
    INSERT INTO agent_statistics AS t
      (tenant_id, agent_key, total_tasks, successful_tasks, failed_tasks, total_duration_us, last_task_time)
    SELECT :tenant, agent_key, count(*), count(*) FILTER (WHERE success), count(*) FILTER (WHERE NOT success),
           LEAST(sum(duration_us), ${INT8_MAX}), max(task_time)
      FROM ${source}
     GROUP BY agent_key
     ORDER BY agent_key
    ${ADD_TO_COUNTERS}`;
}

/**
 * The largest int8: an agent's summed durations saturate there (the contract,
 * AgentStatistics.average_duration), about 292,000 years of task time. Adding
 * to a sum at or near it must neither fail ("bigint out of range" would refuse
 * every later outcome, and audit batch, of the agent) nor wrap; durations are
 * never negative (the table's CHECK), so only the upper bound matters.
 */
const INT8_MAX = "9223372036854775807";

/**
 * The increments of addOutcomesSql, and of the single outcome of recordOutcome.
 * The duration sum saturates at INT8_MAX, compared before adding so that the
 * int8 addition itself never overflows.
 */
const ADD_TO_COUNTERS = `
    ON CONFLICT (tenant_id, agent_key) DO UPDATE SET
      total_tasks = t.total_tasks + EXCLUDED.total_tasks,
      successful_tasks = t.successful_tasks + EXCLUDED.successful_tasks,
      failed_tasks = t.failed_tasks + EXCLUDED.failed_tasks,
      total_duration_us = CASE WHEN t.total_duration_us > ${INT8_MAX} - EXCLUDED.total_duration_us THEN ${INT8_MAX}
                               ELSE t.total_duration_us + EXCLUDED.total_duration_us END,
      last_task_time = GREATEST(t.last_task_time, EXCLUDED.last_task_time),
      version = t.version + 1,
      update_time = now()`;

// A transaction-scoped advisory lock per tenant between the two writers whose
// results must agree: transactions that add decisions' outcomes take it shared
// (they do not wait for each other), RecalculateStatistics takes it exclusive.
// Without it, a rebuild whose snapshot misses a decision committed just after
// would overwrite that decision's increment. Binds `:tenant`.
const LOCK_KEY = "hashtextextended('agent_statistics:' || :tenant, 0)";
/** Taken by every transaction that adds decisions' outcomes, before it writes. */
export const ADD_OUTCOMES_LOCK_SQL = `SELECT pg_advisory_xact_lock_shared(${LOCK_KEY})`;
const REBUILD_LOCK_SQL = `SELECT pg_advisory_xact_lock(${LOCK_KEY})`;

/** One task outcome: agent, success, duration in microseconds. */
export interface Outcome {
  agentKey: string;
  success: boolean;
  durationUs: number;
}

/**
 * Adds one outcome to an agent's counters, creating them on its first outcome,
 * in one atomic statement, and returns the row as this statement left it. The
 * task time is the report time.
 */
export async function recordOutcome(scope: TenantScope, outcome: Outcome): Promise<StatisticsRow> {
  return scope.run(async (db) => recordOutcomeIn(db, scope.tenantId, outcome));
}

/** recordOutcome's statement, on a transaction of the tenant that is already open (retries that count once). */
export async function recordOutcomeIn(db: Knex, tenantId: string, outcome: Outcome): Promise<StatisticsRow> {
  {
    // One row of VALUES, not addOutcomesSql over a one-row CTE: the same
    // increments, without the grouping, which cost PostgreSQL about a third of
    // this call's throughput (docs/performance.md, B4).
    const { rows } = await db.raw<{ rows: StatisticsRow[] }>(
      `INSERT INTO agent_statistics AS t
         (tenant_id, agent_key, total_tasks, successful_tasks, failed_tasks, total_duration_us, last_task_time)
       VALUES (:tenant, :agent_key::text, 1, :successful::int8, :failed::int8, :duration_us::int8, now())
       ${ADD_TO_COUNTERS}
       RETURNING t.*`,
      {
        tenant: tenantId,
        agent_key: outcome.agentKey,
        successful: outcome.success ? 1 : 0,
        failed: outcome.success ? 0 : 1,
        duration_us: outcome.durationUs,
      },
    ).options(PLAN_ONCE);
    return rows[0]!;
  }
}

/** One agent's counters, or undefined. */
export async function findStatistics(scope: TenantScope, agentKey: string): Promise<AgentStatisticsModel | undefined> {
  return scope.run(async (db) => AgentStatisticsModel.query(db).findOne({ tenant_id: scope.tenantId, agent_key: agentKey }));
}

/** At most `limit` agents by agent_key, strictly after `after` (a page and one row more: see paginate). */
export async function listStatistics(scope: TenantScope, after: string | undefined, limit: number): Promise<AgentStatisticsModel[]> {
  return scope.run(async (db) => {
    const q = AgentStatisticsModel.query(db).where("tenant_id", scope.tenantId);
    if (after !== undefined) q.where("agent_key", ">", after);
    return q.orderBy("agent_key").limit(limit);
  });
}

// Orderings of the ranking queries. The rate is compared as float8, the same
// division the response's success_rate shows; the average duration exactly,
// as numeric. Rows without tasks are filtered out first, so no division by 0.
const RATE = "successful_tasks::float8 / total_tasks";
const AVERAGE = "total_duration_us::numeric / total_tasks";

/** Agents with at least max(minimumTasks, 1) tasks, best success rate first, then shortest average duration. */
export async function topPerforming(scope: TenantScope, minimumTasks: bigint, limit: number): Promise<AgentStatisticsModel[]> {
  return scope.run(async (db) =>
    AgentStatisticsModel.query(db)
      .where("tenant_id", scope.tenantId)
      .where("total_tasks", ">=", String(minimumTasks > 0n ? minimumTasks : 1n))
      .orderByRaw(`${RATE} DESC, ${AVERAGE} ASC, agent_key ASC`)
      .limit(limit),
  );
}

/** Agents with at least max(minimumTasks, 1) tasks and a success rate below `threshold`, worst first. */
export async function underperforming(
  scope: TenantScope,
  threshold: number,
  minimumTasks: bigint,
  limit: number,
): Promise<AgentStatisticsModel[]> {
  return scope.run(async (db) =>
    AgentStatisticsModel.query(db)
      .where("tenant_id", scope.tenantId)
      .where("total_tasks", ">=", String(minimumTasks > 0n ? minimumTasks : 1n))
      .whereRaw(`${RATE} < ?::float8`, [threshold])
      .orderByRaw(`${RATE} ASC, ${AVERAGE} DESC, agent_key ASC`)
      .limit(limit),
  );
}

/**
 * Rebuilds the counters of every agent selected by a decision routed at or
 * after `since` (ISO string; null: the whole trail) from those decisions, and
 * returns how many agents' rows changed. One set-based statement, after the
 * exclusive lock, in one transaction; rows already equal to the rebuild are not
 * touched (their version stays).
 */
export async function rebuildFromDecisions(scope: TenantScope, since: string | null): Promise<number> {
  return scope.transaction(async (trx: Knex.Transaction) => {
    const tenant = scope.tenantId;
    // Taken before the rebuild's statement starts, so its snapshot includes
    // every recording that committed while we waited.
    await trx.raw(REBUILD_LOCK_SQL, { tenant });
    const { rows } = await trx.raw<{ rows: { changed: string }[] }>(
      `WITH rebuilt AS (
         SELECT selected_agent AS agent_key,
                count(*) AS total_tasks,
                count(*) FILTER (WHERE success) AS successful_tasks,
                count(*) FILTER (WHERE NOT success) AS failed_tasks,
                LEAST(sum(task_duration_us), ${INT8_MAX}) AS total_duration_us,
                max(routed_at) AS last_task_time
           FROM routing_decisions
          WHERE tenant_id = :tenant AND routed_at >= COALESCE(:since::timestamptz, '-infinity'::timestamptz)
          GROUP BY selected_agent
          ORDER BY selected_agent
       ), changed AS (
         INSERT INTO agent_statistics AS t
           (tenant_id, agent_key, total_tasks, successful_tasks, failed_tasks, total_duration_us, last_task_time)
         SELECT :tenant, agent_key, total_tasks, successful_tasks, failed_tasks, total_duration_us, last_task_time
           FROM rebuilt
         ON CONFLICT (tenant_id, agent_key) DO UPDATE SET
           total_tasks = EXCLUDED.total_tasks,
           successful_tasks = EXCLUDED.successful_tasks,
           failed_tasks = EXCLUDED.failed_tasks,
           total_duration_us = EXCLUDED.total_duration_us,
           last_task_time = EXCLUDED.last_task_time,
           version = t.version + 1,
           update_time = now()
         WHERE (t.total_tasks, t.successful_tasks, t.failed_tasks, t.total_duration_us, t.last_task_time)
               IS DISTINCT FROM
               (EXCLUDED.total_tasks, EXCLUDED.successful_tasks, EXCLUDED.failed_tasks,
                EXCLUDED.total_duration_us, EXCLUDED.last_task_time)
         RETURNING 1
       )
       SELECT count(*) AS changed FROM changed`,
      { tenant, since },
    );
    return Number(rows[0]!.changed);
  });
}
