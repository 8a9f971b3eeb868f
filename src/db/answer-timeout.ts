import type { Knex } from "knex";

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
//   statement fails (the call answers UNAVAILABLE) and the pool discards the
//   connection (database.ts), as the LISTEN connection is replaced when its
//   probe goes unanswered (notification-listener.ts);
// - TCP keepalive finds idle connections whose peer vanished (database.ts).
// Migrations run without the bound (database.ts: they may legitimately take long).

/** Default of DATABASE_STATEMENT_TIMEOUT_MS (config.ts), for a Knex made without it (tests, the knex CLI). */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 20_000;

/** Time given to PostgreSQL past a statement's own timeout to answer before its connection is presumed dead. */
export const ANSWER_GRACE_MS = 1_000;

/** pg's error for a statement that got no answer within query_timeout. */
const UNANSWERED = "Query read timeout";

/** Whether `err` (or its cause) says a statement got no answer in time: its connection is presumed dead. */
export function isUnanswered(err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === "object" && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { message?: unknown }).message === UNANSWERED) return true;
  }
  return false;
}

/**
 * The statement timeout of `knex`'s connections (DATABASE_STATEMENT_TIMEOUT_MS),
 * read back from the query_timeout database.ts gave them; undefined on PGlite,
 * which runs in process and cannot be partitioned away.
 */
export function statementTimeoutOf(knex: Knex): number | undefined {
  const connection = (knex.client as { config?: Knex.Config }).config?.connection as { query_timeout?: unknown } | undefined;
  const readTimeout = typeof connection === "object" ? connection?.query_timeout : undefined;
  return typeof readTimeout === "number" ? Math.max(1, readTimeout - ANSWER_GRACE_MS) : undefined;
}
