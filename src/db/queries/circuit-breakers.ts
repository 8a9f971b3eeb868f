import type { Knex } from "knex";
import { raw } from "objection";
import { type BreakerRow, CircuitBreakerModel } from "../models/circuit-breaker.js";
import { CircuitBreakerTransitionModel, type TransitionRow } from "../models/circuit-breaker-transition.js";
import { parseJsonAttributes } from "../models/plain-rows.js";
import { PLAN_ONCE, type TenantScope } from "../../tenancy/tenant-scope.js";

// Every SQL statement of CircuitBreakerService. Each function takes the call's
// TenantScope and filters or writes tenant_id from it; none takes a bare Knex.
//
// How the shared state machine stays atomic across replicas: every change of
// one breaker (save, reset, record an outcome, grant a permission) runs in one
// transaction that first locks the breaker's row (SELECT ... FOR UPDATE), then
// decides on the row it locked, then writes the row and its transition. A
// concurrent change of the same breaker waits for the lock and then decides on
// what the first one committed, so no count, threshold or trial grant is lost
// or applied twice; the write is conditional on the version it was decided
// on (UPDATE ... WHERE version = ?, as for executions), which the lock keeps
// for changes without an etag, and which a save's etag names otherwise. The
// lock, not a retry on a version conflict, is what serializes changes
// without an etag: RecordCallOutcome calls that race on one breaker wait for
// each other instead of failing. The database's clock, read after the lock, is the only
// clock: replicas' clocks may differ. RecoverCircuitBreakers changes many
// breakers in one statement that locks the expired rows and rechecks them
// after any wait, so concurrent calls change each breaker once.

/**
 * The breaker columns a change writes (int8 columns as decimal text, times as
 * ISO strings or null); the policy overrides only when the change replaces them.
 */
export type BreakerColumns = Pick<
  BreakerRow,
  | "state"
  | "failure_count"
  | "success_count"
  | "consecutive_failures"
  | "recent_outcomes"
  | "trial_calls_granted"
  | "trial_permits"
  | "opened_at"
  | "reset_at"
> &
  Partial<Pick<BreakerRow, "policy">>;

/** The columns of a transition record (int8 columns as decimal text). */
export type TransitionColumns = Pick<
  TransitionRow,
  "from_state" | "to_state" | "reason" | "failure_count" | "success_count" | "consecutive_failures" | "window_calls" | "window_failures"
>;

/** A breaker as locked for a change, and the database's clock read after the lock. */
export interface LockedBreaker {
  /** Undefined when the agent has no breaker (and none was to be created). */
  row: BreakerRow | undefined;
  /** clock_timestamp() in timestamptz text form. */
  now: string;
  /** Whether this transaction created the breaker (createIfMissing): no etag can match it yet. */
  created: boolean;
}

/** What a change decided: what to write (nothing: leave the row as is), and what to return. */
export interface Decision<T> {
  breaker?: BreakerColumns;
  transition?: TransitionColumns;
  result: T;
}

/** What changeBreaker requires of the stored breaker: the version of the client's etag. */
export interface BreakerCondition {
  version: string;
  /** The error a mismatch throws (rolling the transaction back). */
  mismatch: () => Error;
}

/** The outcome of changeBreaker: the row and transition as stored, and the decision's result. */
export interface Changed<T> {
  row: BreakerRow | undefined;
  transition: TransitionRow | undefined;
  result: T;
  now: string;
}

/**
 * Changes one breaker atomically: in one transaction, optionally creates it
 * (CLOSED, default policy) when missing, locks its row, lets `decide` choose
 * the change from the locked row and the database clock, and writes it: the
 * row (version = the next value of row_version_seq, so that an etag never
 * repeats for the agent, also across delete and recreate; update_time = that
 * clock) and, if any, the transition
 * (which notifies watchers on commit, see the migration's trigger). When
 * `decide` throws, nothing is written. With `options.ifVersion`, the row is
 * written only at that version (a breaker this transaction created has none a
 * client can hold): otherwise its `mismatch()` is thrown and nothing is written.
 */
export async function changeBreaker<T>(
  scope: TenantScope,
  agentKey: string,
  options: { createIfMissing: boolean; ifVersion?: BreakerCondition | undefined },
  decide: (locked: LockedBreaker) => Decision<T>,
): Promise<Changed<T>> {
  return scope.transaction(async (trx) => changeBreakerIn(trx, scope, agentKey, options, decide));
}

/** changeBreaker in a transaction of the tenant that is already open (retries that count once). */
export async function changeBreakerIn<T>(
  trx: Knex.Transaction,
  scope: TenantScope,
  agentKey: string,
  options: { createIfMissing: boolean; ifVersion?: BreakerCondition | undefined },
  decide: (locked: LockedBreaker) => Decision<T>,
): Promise<Changed<T>> {
  {
    const key = { tenant: scope.tenantId, agent: agentKey };
    let created = false;
    if (options.createIfMissing) {
      // The version comes from the column's default, nextval('row_version_seq').
      const inserted = await trx.raw<{ rows: unknown[] }>(
        `INSERT INTO circuit_breakers (tenant_id, agent_key, state) VALUES (:tenant, :agent, 'CLOSED')
         ON CONFLICT (tenant_id, agent_key) DO NOTHING RETURNING 1`,
        key,
      ).options(PLAN_ONCE);
      created = inserted.rows.length === 1;
    }
    if (created && options.ifVersion !== undefined) throw options.ifVersion.mismatch();
    // The clock is read by the outer SELECT, after the CTE has returned (and
    // so locked) the row: a wait for another replica's change is not counted
    // as elapsed time before it.
    // (A LEFT JOIN: no breaker is a row of nulls, and the clock.)
    const { rows } = await trx.raw<{ rows: ((BreakerRow | { [K in keyof BreakerRow]: null }) & { db_now: string })[] }>(
      `WITH locked AS (
         SELECT * FROM circuit_breakers WHERE tenant_id = :tenant AND agent_key = :agent FOR UPDATE
       )
       SELECT clock_timestamp()::text AS db_now, locked.* FROM (SELECT 1) AS one LEFT JOIN locked ON true`,
      key,
    ).options(PLAN_ONCE);
    const { db_now: now, ...found } = rows[0]!;
    const locked = found.agent_key === null ? undefined : parseJsonAttributes(CircuitBreakerModel, found);
    const decision = decide({ row: locked, now, created });
    let row = locked;
    if (decision.breaker !== undefined) {
      // Conditional on the version decided on: the etag's, or the locked row's.
      const version = options.ifVersion?.version ?? locked?.version;
      const patched = await CircuitBreakerModel.query(trx)
        .where({ tenant_id: scope.tenantId, agent_key: agentKey })
        .where("version", version ?? null)
        .patch({ ...decision.breaker, version: raw("nextval('row_version_seq')"), update_time: now })
        .returning("*");
      row = patched[0];
      if (row === undefined) {
        // Under the row lock only an etag can miss.
        throw options.ifVersion?.mismatch() ?? new Error(`breaker "${agentKey}" changed under its row lock`);
      }
    }
    let transition: TransitionRow | undefined;
    if (decision.transition !== undefined) {
      transition = await CircuitBreakerTransitionModel.query(trx)
        .insert({ tenant_id: scope.tenantId, agent_key: agentKey, ...decision.transition, transition_time: now })
        .returning("*");
    }
    return { row, transition, result: decision.result, now };
  }
}

/** One breaker of the tenant, or undefined. */
export async function findBreaker(scope: TenantScope, agentKey: string): Promise<CircuitBreakerModel | undefined> {
  return scope.run(async (db) => CircuitBreakerModel.query(db).findOne({ tenant_id: scope.tenantId, agent_key: agentKey }));
}

/**
 * Breakers of the tenant ordered by agent_key, strictly after `afterAgentKey`,
 * at most `limit`: only in `states` and of `agentKeys` when they are not empty.
 */
export async function listBreakers(
  scope: TenantScope,
  filters: { states?: string[]; agentKeys?: string[] },
  afterAgentKey: string | undefined,
  limit: number,
): Promise<CircuitBreakerModel[]> {
  return scope.run(async (db) => {
    const q = CircuitBreakerModel.query(db).where("tenant_id", scope.tenantId);
    if (filters.states !== undefined && filters.states.length > 0) q.whereIn("state", filters.states);
    if (filters.agentKeys !== undefined && filters.agentKeys.length > 0) q.whereIn("agent_key", filters.agentKeys);
    if (afterAgentKey !== undefined) q.where("agent_key", ">", afterAgentKey);
    return q.orderBy("agent_key").limit(limit);
  });
}

/** A breaker RecoverCircuitBreakers changed, with the counts it had when OPEN. */
export type RecoveredRow = BreakerRow & { from_failure_count: string; from_success_count: string };

/**
 * Moves every OPEN breaker of the tenant whose reset_at has passed to
 * HALF_OPEN, records a transition for each, and returns the changed rows, in
 * one statement. The `expired` CTE locks the rows; a concurrent call that
 * found the same rows waits, then rechecks `state = 'OPEN'` on the committed
 * row (PostgreSQL's READ COMMITTED recheck) and skips it, so each breaker is
 * changed, and returned, once. Rows are locked in agent_key order, so that
 * concurrent calls cannot deadlock on each other. At most `limit` breakers
 * (the first by agent_key) per call, so that an answer stays bounded.
 */
export async function recoverExpired(scope: TenantScope, limit: number): Promise<RecoveredRow[]> {
  return scope.run(async (db) => {
    const { rows } = await db.raw<{ rows: RecoveredRow[] }>(
      `WITH clock AS (SELECT clock_timestamp() AS now),
       expired AS (
         SELECT tenant_id, agent_key, failure_count, success_count FROM circuit_breakers
         WHERE tenant_id = :tenant AND state = 'OPEN' AND reset_at <= (SELECT now FROM clock)
         ORDER BY agent_key
         LIMIT :limit
         FOR UPDATE
       ),
       changed AS (
         UPDATE circuit_breakers b SET
           state = 'HALF_OPEN', failure_count = 0, success_count = 0, consecutive_failures = 0,
           recent_outcomes = '', trial_calls_granted = 0, trial_permits = '[]', reset_at = NULL,
           version = nextval('row_version_seq'), update_time = (SELECT now FROM clock)
         FROM expired e
         WHERE b.tenant_id = e.tenant_id AND b.agent_key = e.agent_key
         RETURNING b.*, e.failure_count AS from_failure_count, e.success_count AS from_success_count
       ),
       logged AS (
         INSERT INTO circuit_breaker_transitions
           (tenant_id, agent_key, from_state, to_state, reason, failure_count, success_count, transition_time)
         SELECT tenant_id, agent_key, 'OPEN', 'HALF_OPEN', 'OPEN_DURATION_ELAPSED',
                from_failure_count, from_success_count, (SELECT now FROM clock)
         FROM changed
       )
       SELECT * FROM changed ORDER BY agent_key`,
      { tenant: scope.tenantId, limit },
    );
    return rows;
  });
}

/**
 * Deletes the tenant's CLOSED breakers not updated since `updatedBefore` and
 * returns how many. The state is part of the statement, and rechecked on
 * rows changed concurrently, so a breaker that is not CLOSED is never deleted.
 */
export async function deleteClosedBefore(scope: TenantScope, updatedBefore: string): Promise<number> {
  return scope.run(async (db) => {
    const deleted: unknown = await CircuitBreakerModel.query(db)
      .where({ tenant_id: scope.tenantId, state: "CLOSED" })
      .where("update_time", "<", updatedBefore)
      .delete();
    if (typeof deleted !== "number") throw new Error(`DELETE returned ${typeof deleted}, not a row count`);
    return deleted;
  });
}

/** One page of an agent's transitions, newest first, strictly before `beforeId`. */
export async function listTransitions(
  scope: TenantScope,
  agentKey: string,
  beforeId: string | undefined,
  limit: number,
): Promise<CircuitBreakerTransitionModel[]> {
  return scope.run(async (db) => {
    const q = CircuitBreakerTransitionModel.query(db).where({ tenant_id: scope.tenantId, agent_key: agentKey });
    if (beforeId !== undefined) q.whereRaw("transition_id < ?::bigint", [beforeId]);
    return q.orderBy("transition_id", "desc").limit(limit);
  });
}
