import type { Knex } from "knex";
import { TENANT_ROLE } from "./support/row-security.js";

// Leases of workflow executions (ClaimIncompleteWorkflows, RenewLeases,
// ReleaseLeases, fenced SaveWorkflowExecution), and versions that never repeat.
//
// - Sequence `row_version_seq` (shared with circuit_breakers, whose migration
//   creates it the same way: IF NOT EXISTS, whichever runs first): every write
//   of an execution takes its next value as the new `version` (the etag), and
//   every claim its next value as the lease's fencing token. So an etag never
//   comes back for the same execution, also after a delete and recreate (a
//   per-row counter restarted at 1), and a fencing token is strictly
//   increasing per execution and never reused. It starts at 10^12, above any
//   version a per-row counter reached before, so a version stored before this
//   migration is never handed out again either. The tenant role needs USAGE
//   (nextval) on it.
// - lease_owner, lease_token, lease_expire_time: the execution's current
//   lease, all three set or all three NULL. A claim takes rows whose lease is
//   NULL or expired; the claim's keyset walk is served by the partial indexes
//   on incomplete rows (the lease test is a filter on the rows they find), so
//   no index is added: incomplete rows are a small part of the table.

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE SEQUENCE IF NOT EXISTS row_version_seq START WITH 1000000000000`);
  await knex.raw(`GRANT USAGE ON SEQUENCE row_version_seq TO ${TENANT_ROLE}`);
  await knex.raw(`
    ALTER TABLE workflow_executions
      ALTER COLUMN version SET DEFAULT nextval('row_version_seq'),
      ADD COLUMN lease_owner text,
      ADD COLUMN lease_token bigint,
      ADD COLUMN lease_expire_time timestamptz,
      ADD CONSTRAINT workflow_executions_lease_check CHECK (
        (lease_owner IS NULL) = (lease_token IS NULL) AND (lease_token IS NULL) = (lease_expire_time IS NULL))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE workflow_executions
      DROP CONSTRAINT workflow_executions_lease_check,
      DROP COLUMN lease_expire_time,
      DROP COLUMN lease_token,
      DROP COLUMN lease_owner,
      ALTER COLUMN version SET DEFAULT 1`);
  // The sequence stays: circuit_breakers may use it too.
}
