import type { Knex } from "knex";
import { TENANT_ROLE } from "./support/row-security.js";

// Breaker versions (etags) that never repeat for the same agent, also after
// DeleteCircuitBreakerStates and a recreate (a per-row counter restarted at 1,
// so an old etag matched again: ABA).
//
// Sequence `row_version_seq` is shared with workflow_executions, whose
// migration creates it the same way (IF NOT EXISTS, whichever runs first):
// every write of a breaker, and the insert that creates it, takes its next
// value as the new `version`. It starts at 10^12, above any version a per-row
// counter reached before, so a version stored before this migration is never
// handed out again either. The tenant role needs USAGE (nextval) on it.

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE SEQUENCE IF NOT EXISTS row_version_seq START WITH 1000000000000`);
  await knex.raw(`GRANT USAGE ON SEQUENCE row_version_seq TO ${TENANT_ROLE}`);
  await knex.raw(`ALTER TABLE circuit_breakers ALTER COLUMN version SET DEFAULT nextval('row_version_seq')`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE circuit_breakers ALTER COLUMN version SET DEFAULT 1`);
  // The sequence stays: workflow_executions may use it too.
}
