import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { statementTimeoutOf } from "../connection/answer-timeout.js";
import { TRANSACTION_SETTINGS_SELECT } from "../connection/session-settings.js";
import { databaseErrorToConnect } from "../errors/database-errors.js";
import { pipelines, runPipelinedUnit } from "./pipelined-unit.js";
import { runTenantUnit, type TenantUnit } from "./tenant-unit.js";
import { MAX_TIMER_MS } from "../ranges.js";

// How every unit of work of a call is bound to its tenant inside the database.
//
// Each table of ours has row-level security, forced also for its owner, with
// one policy: a row is visible and writable only when its tenant_id equals the
// transaction's `app.tenant_id` setting (see the migration
// 20261126030000_row_level_security). Superusers and roles with BYPASSRLS skip
// every policy, and the connecting user may well be one (CI's `postgres`,
// PGlite's only user), so each unit also switches to TENANT_ROLE, a NOLOGIN
// role without BYPASSRLS that holds just the table privileges the queries
// need. Both settings are transaction-local (`set_config(..., true)`): the end
// of the unit's transaction restores the pooled connection to its login role
// and no tenant, so a connection never carries one call's tenant into the next.
//
// The same binding SELECT bounds every later statement of the unit by the
// call's deadline (`statement_timeout`): PostgreSQL cancels a statement still
// running when the client has stopped waiting, so it neither keeps locks nor
// writes after the call was answered DEADLINE_EXCEEDED.
//
// Two paths run a unit, with the same guarantees (test/tenancy/ runs both):
// - the default path, on public Knex and driver APIs only: a Knex transaction
//   whose first statement is the binding (src/tenancy/tenant-unit.ts). PGlite
//   always takes it, and PostgreSQL with DATABASE_PIPELINED_UNITS=false;
// - on PostgreSQL by default, the pipelined unit (src/tenancy/pipelined-unit.ts,
//   an adapter on pinned Knex and pg internals): the binding travels with the
//   unit's first statement in one batch, and a single-statement unit
//   (TenantScope.run) needs no BEGIN and no COMMIT: one round trip, as many as
//   the bare statement, where the default path takes four. Round trips are
//   what a unit costs over a network; PGlite runs in process.
// The binding's values (tenant id, timeout) are bind parameters, never part
// of the SQL text.

/** The role every tenant transaction runs as: NOLOGIN, no BYPASSRLS, created by the migration. */
export const TENANT_ROLE = "orchestrator_tenant";

/** The transaction-local setting the policies compare tenant_id with. */
export const TENANT_SETTING = "app.tenant_id";

// The binding: tenant, role, the session settings the code relies on (for
// this transaction: it may run on any server connection behind a pooler; see
// src/connection/session-settings.ts), the planner settings below and, with
// a deadline, the statement timeout in milliseconds; the values are bind
// parameters.
//
// Every statement of a tenant reads or writes a bounded page, batch or row of
// that tenant, through an index that starts with tenant_id; the planner is
// kept to such plans when a table's statistics mislead it (docs/performance.md,
// "A new machine"):
// - no parallel workers: starting them costs milliseconds per statement, more
//   than they gain here, and a tenant's one call would take several backend
//   processes and cores, past what TENANT_CALLS_MAX allows it. On a table
//   bulk-loaded and not analyzed yet, every StreamIncompleteWorkflows batch
//   was planned parallel: 8 ms instead of 1 ms, the stream at 40% of its rate;
// - no sequential scan where an index serves (enable_seqscan off: a last
//   resort for the planner, not a ban): a scan of a whole table reads every
//   tenant's rows. With execution_leases analyzed while empty (a new
//   deployment), each claim batch joined its executions to the growing lease
//   table by scanning all of it per row, so a claim of 1,000,000 executions
//   slowed down with every batch.
const BIND = `SELECT set_config('${TENANT_SETTING}', $1, true), set_config('role', '${TENANT_ROLE}', true), ${TRANSACTION_SETTINGS_SELECT}, set_config('max_parallel_workers_per_gather', '0', true), set_config('enable_seqscan', 'off', true)`;
const BIND_WITH_TIMEOUT = `${BIND}, set_config('statement_timeout', $2, true)`;

/** The binding statement of `tenantId`, with `timeoutMs` (an integer from 1 to MAX_TIMEOUT_MS) when given. */
export function bindingStatement(tenantId: string, timeoutMs: number | undefined): { sql: string; values: string[] } {
  return timeoutMs === undefined ? { sql: BIND, values: [tenantId] } : { sql: BIND_WITH_TIMEOUT, values: [tenantId, String(timeoutMs)] };
}

// statement_timeout and Node's timers both take at most MAX_TIMER_MS (2^31-1
// ms, ~24.8 days); a deadline further away than that is treated as none.
const MAX_TIMEOUT_MS = MAX_TIMER_MS;

/** The error of a call whose deadline passed before its transaction could start. */
function deadlinePassed(): ConnectError {
  return new ConnectError("the call's deadline passed before the database could run it; nothing was written", Code.DeadlineExceeded);
}

/** What a unit of work may run: one statement (TenantScope.run), or any number in one transaction. */
export type UnitKind = TenantUnit["kind"];

/**
 * Runs `work` as one unit bound to `tenantId` (row-level security) and, when
 * `deadline` (epoch ms) is given, to the call's deadline:
 * - kind "transaction": any number of statements, in one transaction, committed
 *   when `work` resolves and rolled back when it rejects;
 * - kind "statement": exactly one statement, which is its own transaction,
 *   committed as soon as it succeeded (on PostgreSQL in the same round trip as
 *   the binding, like the bare statement); a second statement is refused
 *   before it reaches the database.
 * With a deadline:
 * - each statement is cancelled by PostgreSQL when the deadline passes
 *   (SQLSTATE 57014, rethrown as DEADLINE_EXCEEDED);
 * - waiting for a pooled connection (PostgreSQL pool exhausted, or PGlite's one
 *   connection held by another transaction) ends at the deadline with
 *   DEADLINE_EXCEEDED; the connection, when it comes later, goes straight
 *   back to the pool;
 * - the binding carries the time left as statement_timeout (pipelined: when
 *   the first statement is sent, and nothing at all is sent if none is left;
 *   default path: after BEGIN, and a statement that would start once none is
 *   left is refused): DEADLINE_EXCEEDED, nothing written.
 * On PostgreSQL, with or without a deadline, no statement runs longer than
 * the connections' statement timeout (DATABASE_STATEMENT_TIMEOUT_MS, see
 * src/connection/answer-timeout.ts): the binding's statement_timeout is the smaller
 * of the two, and a statement cancelled by it answers DEADLINE_EXCEEDED too.
 */
export async function tenantTransaction<T>(
  knex: Knex,
  tenantId: string,
  deadline: number | undefined,
  work: (trx: Knex.Transaction) => Promise<T>,
  kind: UnitKind = "transaction",
): Promise<T> {
  const bounded = deadline !== undefined && deadline - Date.now() <= MAX_TIMEOUT_MS;
  if (bounded && deadline - Date.now() <= 0) throw deadlinePassed();
  const cap = statementTimeoutOf(knex);
  // When the statement timeout the binding set will have passed, whichever of
  // the deadline and the cap it came from: a cancellation after it is ours.
  let timeoutAt: number | undefined;
  const unit: TenantUnit = {
    kind,
    checkDeadline: () => {
      if (bounded && deadline - Date.now() <= 0) throw deadlinePassed();
    },
    binding: () => {
      const now = Date.now();
      const remaining = bounded ? Math.ceil(deadline - now) : undefined;
      if (remaining !== undefined && remaining <= 0) throw deadlinePassed();
      const timeoutMs = cap === undefined ? remaining : Math.min(remaining ?? cap, cap);
      if (timeoutMs !== undefined) timeoutAt = now + timeoutMs;
      return bindingStatement(tenantId, timeoutMs);
    },
  };
  const client = knex.client as { acquireConnection(): Promise<unknown>; releaseConnection(connection: unknown): Promise<unknown> };
  const connection = bounded ? await acquireBefore(client, deadline) : await client.acquireConnection();
  try {
    const run = pipelines(knex, connection) ? runPipelinedUnit : runTenantUnit;
    return await run(knex, connection, unit, work);
  } catch (err) {
    // The client may have cancelled at its own deadline, a moment before ours:
    // the clock, not the call's signal, tells that the deadline passed.
    const code = (err as { code?: unknown } | null)?.code;
    if (code === "57014" && ((bounded && Date.now() >= deadline) || (timeoutAt !== undefined && Date.now() >= timeoutAt))) {
      throw databaseErrorToConnect(err, { deadlinePassed: true });
    }
    throw err;
  } finally {
    await client.releaseConnection(connection);
  }
}

/** A pooled connection, or DEADLINE_EXCEEDED at `deadline` (a connection that comes later goes back at once). */
async function acquireBefore(
  client: { acquireConnection(): Promise<unknown>; releaseConnection(connection: unknown): Promise<unknown> },
  deadline: number,
): Promise<unknown> {
  const acquiring = client.acquireConnection();
  let timer: NodeJS.Timeout | undefined;
  const waiting = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(deadlinePassed()), deadline - Date.now());
  });
  try {
    return await Promise.race([acquiring, waiting]);
  } catch (err) {
    acquiring.then((connection) => client.releaseConnection(connection), () => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
