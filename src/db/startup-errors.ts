// Why the database could not be opened at startup, and whether waiting can
// help. A server that is down, restarting or not yet resolvable (a container
// started before its database) is worth retrying; a database that answers
// "no such database", "no such role" or "wrong password" says the same thing
// at every attempt, so the process stops at once and names DATABASE_URL
// (README "Exit codes").

// SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html) that no retry can change.
const PERMANENT_SQLSTATES: Record<string, string> = {
  "28000": "the server refused the role", // invalid_authorization_specification: no such role, no pg_hba.conf entry
  "28P01": "password authentication failed", // invalid_password
  "3D000": "the database does not exist", // invalid_catalog_name
  "42501": "the role lacks a privilege the migrations need", // insufficient_privilege
};
// What pg says, with no SQLSTATE, about a configuration the server will never accept.
const PERMANENT_MESSAGES = [
  "does not support SSL", // sslmode=require against a server without TLS
  "SASL: SCRAM-SERVER-FIRST-MESSAGE", // the server wants a password and the URL gives none
  "self-signed certificate",
  "certificate has expired",
  "unable to verify the first certificate",
];

/**
 * When `err` (from connecting to PostgreSQL or migrating it) cannot go away by
 * retrying, a sentence saying why, quoting the server's message; otherwise
 * undefined (retry).
 */
export function permanentDatabaseError(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { code, message } = err as { code?: unknown; message?: unknown };
  const text = typeof message === "string" ? message : "";
  if (typeof code === "string" && code in PERMANENT_SQLSTATES) return `${PERMANENT_SQLSTATES[code]} (${code}: ${text})`;
  if (PERMANENT_MESSAGES.some((m) => text.includes(m))) return text;
  return undefined;
}

/**
 * The same failure as `err` without its stack, for the line logged at each
 * retry: an unreachable database is an expected condition, and a stack per
 * attempt buries what matters (its code and message). `code` is kept, so that
 * the failure is still classified as "unavailable".
 */
export function withoutStack(err: unknown): Error {
  const { code, name, message } = (typeof err === "object" && err !== null ? err : {}) as { code?: unknown; name?: unknown; message?: unknown };
  const plain = new Error(typeof message === "string" && message !== "" ? message : String(err));
  plain.name = typeof name === "string" ? name : "Error";
  if (typeof code === "string") Object.assign(plain, { code });
  plain.stack = undefined;
  return plain;
}
