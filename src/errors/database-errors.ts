import { Code, ConnectError } from "@connectrpc/connect";

// SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
// that mean "the database cannot serve you right now": the call may succeed
// if retried, so the client gets UNAVAILABLE.
const UNAVAILABLE_SQLSTATES = new Set([
  "53300", // too_many_connections
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53000", // insufficient_resources
  "53100", // disk_full
  "53200", // out_of_memory
]);
// Transaction conflicts: retrying the whole call is safe and expected.
const ABORTED_SQLSTATES = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
]);
const NETWORK_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "EAI_AGAIN"]);

/** pg's error for a statement that got no answer within query_timeout (src/connection/answer-timeout.ts). */
const UNANSWERED = "Query read timeout";

/**
 * Whether `err` (or its cause) says a statement got no answer in time: its
 * connection is presumed dead. Knex prefixes the message of an error of a
 * statement it ran with the statement ("SELECT ... - Query read timeout").
 */
export function isUnanswered(err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === "object" && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const message = (e as { message?: unknown }).message;
    if (typeof message === "string" && (message === UNANSWERED || message.endsWith(` - ${UNANSWERED}`))) return true;
  }
  return false;
}

/** What is known about the call whose database work failed. */
export interface FailedCall {
  /**
   * The call's deadline had passed when the error arrived. Only the tenant
   * transaction knows the deadline (src/tenancy/row-level-security.ts): it
   * translates its own errors with this set, before the error interceptor
   * (which calls without it) sees them.
   */
  deadlinePassed: boolean;
}

/**
 * PostgreSQL's answer to a named statement whose result columns changed since
 * it was parsed (`SELECT *` of a table a newer version's migration added a
 * column to): the statement is unusable on that connection for good, so the
 * connection is discarded (src/tenancy/pipelined-unit.ts) and the call
 * answers UNAVAILABLE: its retry runs on a new connection, which parses the
 * statement again.
 */
export function isStalePlan(err: unknown): boolean {
  // The server function that raises it names it whatever lc_messages translates the message to.
  const { code, routine } = (err ?? {}) as { code?: unknown; routine?: unknown };
  return code === "0A000" && routine === "RevalidateCachedQuery";
}

/**
 * Translates an error thrown while talking to the database into the error the
 * client sees, or returns undefined when it is not a database error we know.
 * The message never carries SQL text or driver details; the original error is
 * kept as `cause` for the log.
 */
export function databaseErrorToConnect(err: unknown, call: FailedCall = { deadlinePassed: false }): ConnectError | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { code, name, message } = err as { code?: unknown; name?: unknown; message?: unknown };
  const msg = typeof message === "string" ? message : "";
  if (typeof code === "string") {
    if (code.startsWith("08") || UNAVAILABLE_SQLSTATES.has(code) || NETWORK_ERRNOS.has(code) || isStalePlan(err)) {
      return new ConnectError("the database is unavailable; retry with backoff", Code.Unavailable, undefined, undefined, err);
    }
    if (ABORTED_SQLSTATES.has(code)) {
      return new ConnectError("the transaction conflicted with another one; retry", Code.Aborted, undefined, undefined, err);
    }
    if (code === "57014") {
      // query_canceled: by the statement_timeout a tenant transaction sets to
      // the call's deadline, or by an operator (pg_cancel_backend).
      if (call.deadlinePassed) {
        return new ConnectError("the call's deadline passed; the statement was cancelled and nothing was written", Code.DeadlineExceeded, undefined, undefined, err);
      }
      return new ConnectError("the query was cancelled", Code.Canceled, undefined, undefined, err);
    }
  }
  // Knex's pool gave up waiting for a connection, pg lost its socket, or the
  // database did not answer in time (src/connection/answer-timeout.ts: presumed gone).
  if (
    name === "KnexTimeoutError" ||
    isUnanswered(err) ||
    msg.includes("Connection terminated") ||
    msg.includes("connect ECONNREFUSED") ||
    msg.includes("Client was closed") ||
    msg.includes("PGlite is closed") ||
    msg.includes("Unable to acquire a connection")
  ) {
    return new ConnectError("the database is unavailable; retry with backoff", Code.Unavailable, undefined, undefined, err);
  }
  return undefined;
}
