// The session settings the code relies on, whatever the database's defaults
// (ALTER DATABASE/ROLE ... SET, postgresql.conf, PGlite's postgresql.auto.conf):
// - DateStyle ISO: timestamptz values are read as text (src/db/database.ts) and
//   parsed by src/db/convert.ts, which reads the ISO form only; `::text` casts of
//   timestamps (src/db/queries/circuit-breakers.ts) follow DateStyle too. Input is always
//   ISO 8601, which PostgreSQL reads the same under any DateStyle.
// - TimeZone UTC: the text of a timestamptz carries the session's offset;
//   src/db/convert.ts reads any offset, but UTC keeps every text the same whatever
//   the server's zone, and anything that ever works on dates (not instants)
//   from drifting with it.
// - extra_float_digits 1: float8 (agent_score, ratios) as the shortest text
//   that reads back to the same double (PostgreSQL 12's default); 0 or less
//   rounds to 15 significant digits and changes the value.
// - IntervalStyle postgres: nothing reads an interval's text today; pinned so
//   that nothing ever will under another style.
//
// They are applied twice, on purpose:
// - when a connection is made (each pool connection, PGlite's one session):
//   every statement of that session, migrations and probes included, sees
//   them (the LISTEN connection only receives JSON, which is always ISO);
// - transaction-locally, in the binding of every tenant unit and of the
//   maintenance transactions (src/tenancy/row-level-security.ts,
//   src/db/queries/maintenance.ts), in the same SELECT, so at no extra round
//   trip. Behind a pooler in transaction mode (PgBouncer), a session's
//   settings stay on whichever server connection ran them, and the next
//   transaction may get another one that never saw them; what a transaction
//   sets for itself holds wherever it runs. Startup parameters
//   (`options=-c ...`) would cost nothing either, but PgBouncer refuses a
//   startup packet with `options` unless told to ignore it (and then drops it).

/** Every setting the code relies on, and its value. */
export const SESSION_SETTINGS: Readonly<Record<string, string>> = {
  DateStyle: "ISO, MDY",
  TimeZone: "UTC",
  extra_float_digits: "1",
  IntervalStyle: "postgres",
};

const quote = (value: string) => `'${value.replaceAll("'", "''")}'`;

/** One statement setting them for the session (run when a connection is made). */
export const SESSION_SETTINGS_SQL = Object.entries(SESSION_SETTINGS)
  .map(([name, value]) => `SET ${name} = ${quote(value)}`)
  .join("; ");

/**
 * The select-list that sets them for the current transaction only
 * (`set_config(name, value, true)`), to add to a binding SELECT; the values
 * are constants of ours, so they are part of the text, not parameters.
 */
export const TRANSACTION_SETTINGS_SELECT = Object.entries(SESSION_SETTINGS)
  .map(([name, value]) => `set_config(${quote(name)}, ${quote(value)}, true)`)
  .join(", ");
