import type { Knex } from "knex";

// Until 2026-12-05 a conditional save (SaveWorkflowExecution with an etag or a
// fencing token) stored every JSON column of the execution as JSON text inside
// a JSON string (`"{\"a\":1}"` instead of `{"a":1}`): the columns were
// stringified before Objection's patch stringified them again. Reads parsed
// the string back, so clients saw the right values, but SQL over the columns
// (label filters) did not match those rows and their stored_bytes counted
// every escape. This turns each such value back into the JSON value it holds.
//
// None of these columns can hold a JSON string legitimately: definition and
// context are messages (objects), step_executions a list, step_outputs and
// labels maps (objects); a doubly encoded one holds the text of an object or
// a list. The rows keep their version (nothing a client saved changes, so
// their etags stay valid); stored_bytes, a generated column, follows.
//
// The owner (the migrating user, when not a superuser) reaches every tenant's
// rows only without FORCE ROW LEVEL SECURITY (see 20261126030000): off for the
// UPDATE, on again in the same transaction, as 20261204080000 does. The table
// is locked meanwhile (ACCESS EXCLUSIVE), for one pass over it.

const COLUMNS = ["definition", "context", "step_executions", "step_outputs", "labels"] as const;

const doublyEncoded = (column: string) => `(jsonb_typeof(${column}) = 'string' AND left(${column} #>> '{}', 1) IN ('{', '['))`;

export async function up(knex: Knex): Promise<void> {
  const sets = COLUMNS.map((c) => `${c} = CASE WHEN ${doublyEncoded(c)} THEN (${c} #>> '{}')::jsonb ELSE ${c} END`);
  const where = COLUMNS.map(doublyEncoded).join(" OR ");
  await knex.raw(`ALTER TABLE workflow_executions NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`UPDATE workflow_executions SET ${sets.join(", ")} WHERE ${where}`);
  await knex.raw(`ALTER TABLE workflow_executions FORCE ROW LEVEL SECURITY`);
}

export async function down(): Promise<void> {
  // Nothing to undo: the values are what they always meant.
}
