import type { Knex } from "knex";
import pg from "pg";
import { isUnanswered } from "../errors/database-errors.js";

// How long the server waits for PostgreSQL to answer, and what it does when
// no answer comes. A partition does not close a connection: the peer simply
// goes silent, and without a bound a call (and the connection it holds)
// would wait for good. So:
// - every statement a call runs is cancelled by PostgreSQL after
//   DATABASE_STATEMENT_TIMEOUT_MS (statement_timeout, or the call's deadline
//   if sooner; src/tenancy/row-level-security.ts);
// - on every connection, pg gives up on an answer ANSWER_GRACE_MS after that
//   (query_timeout): a database that is up has answered by then, if only with
//   the cancellation, so a connection still silent is presumed dead: the
//   statement fails (the call answers UNAVAILABLE), whoever ran it closes the
//   connection (presumeDead: tenant units, queryWithin) and the pool discards
//   it (isServiceable), as the LISTEN connection is replaced when its probe
//   goes unanswered (src/db/notification-listener.ts);
// - TCP keepalive finds idle connections whose peer vanished (src/db/database.ts).
// Migrations run without the bound (src/db/database.ts: they may legitimately take long).

/** Default of DATABASE_STATEMENT_TIMEOUT_MS (config.ts), for a Knex made without it (tests, the knex CLI). */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 20_000;

/** Time given to PostgreSQL past a statement's own timeout to answer before its connection is presumed dead. */
export const ANSWER_GRACE_MS = 1_000;

/**
 * The statement timeout of `knex`'s connections (DATABASE_STATEMENT_TIMEOUT_MS),
 * read back from the query_timeout src/db/database.ts gave them; undefined on PGlite,
 * which runs in process and cannot be partitioned away.
 */
export function statementTimeoutOf(knex: Knex): number | undefined {
  const connection = (knex.client as { config?: Knex.Config }).config?.connection as { query_timeout?: unknown } | undefined;
  const readTimeout = typeof connection === "object" ? connection?.query_timeout : undefined;
  return typeof readTimeout === "number" ? Math.max(1, readTimeout - ANSWER_GRACE_MS) : undefined;
}

// The connections closed by presumeDead: pg sets nothing public at once when
// end() is called (its 'end' event, which Knex's pool watches, comes later).
const presumedDead = new WeakSet<pg.Client>();

/**
 * Closes a pooled pg connection that must not serve anyone again: it did not
 * answer in time, or it may still hold a transaction. The pool discards it
 * (isServiceable). PGlite's one connection is the database itself: it stays.
 */
export function presumeDead(connection: unknown): void {
  if (!(connection instanceof pg.Client)) return;
  presumedDead.add(connection);
  connection.end().catch(() => {});
}

/**
 * The pool's check of a pg connection on every acquire (src/db/database.ts): not
 * presumed dead, and idle with no transaction open, by the last answer it
 * got (pg's public getTransactionStatus). Knex's pool also discards the
 * connections that reported an error or ended.
 */
export function isServiceable(connection: pg.Client): boolean {
  return !presumedDead.has(connection) && connection.getTransactionStatus() === "I";
}

/**
 * Runs `sql` alone on a pooled connection, giving up on its answer after
 * `timeoutMs` (the health probe): a connection that did not answer is closed,
 * instead of going back to the pool with the statement still in flight.
 */
export async function queryWithin(knex: Knex, sql: string, timeoutMs: number): Promise<unknown> {
  const connection: unknown = await knex.client.acquireConnection();
  try {
    return await knex.raw(sql).connection(connection).options({ query_timeout: timeoutMs });
  } catch (err) {
    if (isUnanswered(err)) presumeDead(connection);
    throw err;
  } finally {
    await knex.client.releaseConnection(connection);
  }
}
