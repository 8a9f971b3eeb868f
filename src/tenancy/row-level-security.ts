import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { databaseErrorToConnect } from "../errors/database-errors.js";

// How every unit of work of a call is bound to its tenant inside the database.
//
// Each table of ours has row-level security, forced also for its owner, with
// one policy: a row is visible and writable only when its tenant_id equals the
// transaction's `app.tenant_id` setting (see the migration
// 20261126030000_row_level_security). Superusers and roles with BYPASSRLS skip
// every policy, and the connecting user may well be one (CI's `postgres`,
// PGlite's only user), so each transaction also switches to TENANT_ROLE, a
// NOLOGIN role without BYPASSRLS that holds just the table privileges the
// queries need. Both settings are transaction-local (`set_config(..., true)`):
// COMMIT or ROLLBACK restores the pooled connection to its login role and no
// tenant, so a connection never carries one call's tenant into the next.
//
// The same first statement bounds every later statement of the transaction by
// the call's deadline (`statement_timeout`): PostgreSQL cancels a statement
// still running when the client has stopped waiting, so it neither keeps
// locks nor writes after the call was answered DEADLINE_EXCEEDED.

/** The role every tenant transaction runs as: NOLOGIN, no BYPASSRLS, created by the migration. */
export const TENANT_ROLE = "orchestrator_tenant";

/** The transaction-local setting the policies compare tenant_id with. */
export const TENANT_SETTING = "app.tenant_id";

// One round trip binds the transaction: tenant, role and, with a deadline, the
// statement timeout in milliseconds.
const BIND_SQL = `SELECT set_config('${TENANT_SETTING}', ?, true), set_config('role', '${TENANT_ROLE}', true)`;
const BIND_WITH_TIMEOUT_SQL = `${BIND_SQL}, set_config('statement_timeout', ?, true)`;

// statement_timeout and Node's timers both take at most 2^31-1 ms (~24.8 days);
// a deadline further away than that is treated as none.
const MAX_TIMEOUT_MS = 2_147_483_647;

/** The error of a call whose deadline passed before its transaction could start. */
function deadlinePassed(): ConnectError {
  return new ConnectError("the call's deadline passed before the database could run it; nothing was written", Code.DeadlineExceeded);
}

/**
 * Runs `work` in one transaction bound to `tenantId` (row-level security) and,
 * when `deadline` (epoch ms) is given, to the call's deadline:
 * - each statement is cancelled by PostgreSQL when the deadline passes
 *   (SQLSTATE 57014, rethrown as DEADLINE_EXCEEDED);
 * - waiting for a pooled connection (PostgreSQL pool exhausted, or PGlite's one
 *   connection held by another transaction) ends at the deadline with
 *   DEADLINE_EXCEEDED; the transaction, when it gets its connection later,
 *   rolls back before running anything.
 * The deadline is checked once more before the transaction binds itself.
 */
export async function tenantTransaction<T>(
  knex: Knex,
  tenantId: string,
  deadline: number | undefined,
  work: (trx: Knex.Transaction) => Promise<T>,
): Promise<T> {
  if (deadline === undefined || deadline - Date.now() > MAX_TIMEOUT_MS) {
    return knex.transaction(async (trx) => {
      await trx.raw(BIND_SQL, [tenantId]);
      return work(trx);
    });
  }
  if (deadline - Date.now() <= 0) throw deadlinePassed();
  let started = false;
  let abandoned = false;
  const transaction = knex.transaction(async (trx) => {
    const remaining = Math.ceil(deadline - Date.now());
    if (abandoned || remaining <= 0) throw deadlinePassed();
    started = true;
    await trx.raw(BIND_WITH_TIMEOUT_SQL, [tenantId, String(remaining)]);
    return work(trx);
  });
  let timer: NodeJS.Timeout | undefined;
  // Settles only when the deadline passes before the transaction started; once
  // it runs, statement_timeout ends it and it settles by itself.
  const waiting = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      if (started) return;
      abandoned = true;
      reject(deadlinePassed());
    }, deadline - Date.now());
  });
  try {
    return await Promise.race([transaction, waiting]);
  } catch (err) {
    // The client may have cancelled at its own deadline, a moment before ours:
    // the clock, not the call's signal, tells that the deadline passed.
    const code = (err as { code?: unknown } | null)?.code;
    if (code === "57014" && Date.now() >= deadline) throw databaseErrorToConnect(err, { deadlinePassed: true });
    throw err;
  } finally {
    clearTimeout(timer);
    // An abandoned transaction rejects later, when it gets its connection.
    transaction.catch(() => {});
  }
}
