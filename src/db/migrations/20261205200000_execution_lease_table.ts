import type { Knex } from "knex";
import { maintenanceRead, runEach, tenantIsolation } from "./support/row-security.js";

// The lease of an execution moves out of workflow_executions into a table of
// its own, `execution_leases`: one narrow row (tenant, execution, owner,
// fencing token, expiry) per execution that was ever claimed and whose lease
// was not ended since. Why: a claim rewrote the whole execution row (about
// 2 KB, never a HOT update, five index entries), about 540 KB of WAL per 100
// claimed rows (B6 in docs/performance.md); now it writes one small row and
// one index entry, and only a row lock on the execution
// (src/db/queries/execution-leases.ts says how claims and fenced saves
// serialize).
//
// - Fencing tokens still come from row_version_seq (20261204010000), so they
//   strictly increase per execution and never repeat, also after a delete
//   and recreate.
// - Foreign key to the execution, ON DELETE CASCADE: deleting an execution
//   (DeleteWorkflowExecutions, retention, or by hand) ends its lease, so an
//   execution recreated under the same id never inherits one.
// - Row-level security, the tenant role's grants and the maintenance role's
//   read as on every table of ours (20261126030000, 20261204050000).
// - Existing leases move over, expired ones too (they read as they did:
//   expired until the next claim), then the old columns and their CHECK go.
//   The owner reaches every tenant's rows only without FORCE ROW LEVEL
//   SECURITY (see 20261205100000): off for the copy, on again in the same
//   transaction.

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE execution_leases (
      tenant_id uuid NOT NULL,
      execution_id text NOT NULL,
      owner text NOT NULL,
      token bigint NOT NULL,
      expire_time timestamptz NOT NULL,
      PRIMARY KEY (tenant_id, execution_id),
      FOREIGN KEY (tenant_id, execution_id) REFERENCES workflow_executions (tenant_id, execution_id) ON DELETE CASCADE
    )`);
  await runEach(knex, [...tenantIsolation("execution_leases"), ...maintenanceRead("execution_leases")]);

  await knex.raw(`ALTER TABLE workflow_executions NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`ALTER TABLE execution_leases NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`
    INSERT INTO execution_leases (tenant_id, execution_id, owner, token, expire_time)
    SELECT tenant_id, execution_id, lease_owner, lease_token, lease_expire_time
    FROM workflow_executions WHERE lease_token IS NOT NULL`);
  await knex.raw(`ALTER TABLE execution_leases FORCE ROW LEVEL SECURITY`);
  await knex.raw(`ALTER TABLE workflow_executions FORCE ROW LEVEL SECURITY`);
  await knex.raw(`
    ALTER TABLE workflow_executions
      DROP CONSTRAINT workflow_executions_lease_check,
      DROP COLUMN lease_expire_time,
      DROP COLUMN lease_token,
      DROP COLUMN lease_owner`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE workflow_executions
      ADD COLUMN lease_owner text,
      ADD COLUMN lease_token bigint,
      ADD COLUMN lease_expire_time timestamptz,
      ADD CONSTRAINT workflow_executions_lease_check CHECK (
        (lease_owner IS NULL) = (lease_token IS NULL) AND (lease_token IS NULL) = (lease_expire_time IS NULL))`);
  await knex.raw(`ALTER TABLE workflow_executions NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`ALTER TABLE execution_leases NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`
    UPDATE workflow_executions AS t
    SET lease_owner = l.owner, lease_token = l.token, lease_expire_time = l.expire_time
    FROM execution_leases AS l
    WHERE t.tenant_id = l.tenant_id AND t.execution_id = l.execution_id`);
  await knex.raw(`ALTER TABLE workflow_executions FORCE ROW LEVEL SECURITY`);
  await knex.raw(`DROP TABLE execution_leases`);
}
