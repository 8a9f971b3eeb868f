import type { Knex } from "knex";

// `stored_bytes` on the tables whose rows can be large (an execution's
// definition, context and outputs; a decision's candidates and error
// message): the UTF-8 bytes of the row's text columns and of its JSON columns
// as JSON text, plus 64 for its other columns. The byte budgets of pages and
// streams (PAGE_MAX_BYTES, STREAM_BATCH_MAX_BYTES) are applied in SQL over it,
// as a running sum (src/db/queries/byte-bounded.ts), so that rows past a budget
// are never sent by the database, let alone parsed by the server; and without
// reading the values themselves, which may be in TOAST storage. (pg_column_size
// would be cheaper but is the compressed size: a highly compressible 2 MB
// context would count a few kilobytes.)
//
// A generated column: computed by the database on every insert and update,
// whoever writes the row, so it cannot drift from the row. Adding it computes
// it for the rows already stored (a rewrite of both tables).

const EXECUTION_BYTES = `
  octet_length(execution_id) + octet_length(workflow_name) + octet_length(status)
  + octet_length(error_message) + octet_length(initiated_by)
  + coalesce(octet_length(definition::text), 0) + coalesce(octet_length(context::text), 0)
  + octet_length(step_executions::text) + octet_length(step_outputs::text) + octet_length(labels::text)
  + 64`;

const DECISION_BYTES = `
  octet_length(task_id) + octet_length(task_type) + octet_length(required_capability) + octet_length(selected_agent)
  + octet_length(error_message) + octet_length(workflow_execution_id) + octet_length(step_id)
  + octet_length(candidates::text)
  + 64`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE workflow_executions ADD COLUMN stored_bytes bigint GENERATED ALWAYS AS (${EXECUTION_BYTES}) STORED`);
  await knex.raw(`ALTER TABLE routing_decisions ADD COLUMN stored_bytes bigint GENERATED ALWAYS AS (${DECISION_BYTES}) STORED`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE routing_decisions DROP COLUMN stored_bytes`);
  await knex.raw(`ALTER TABLE workflow_executions DROP COLUMN stored_bytes`);
}
