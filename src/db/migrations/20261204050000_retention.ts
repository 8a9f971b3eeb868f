import type { Knex } from "knex";
import { createRoleIfMissing, MAINTENANCE_ROLE, maintenanceRead, runEach, tenantIsolation } from "./support/row-security.js";

// What scheduled retention and the domain metrics need:
//
// - workflow_executions.legal_hold: an execution under legal hold is never
//   deleted (by retention or DeleteWorkflowExecutions). The retention index
//   covers the rows retention may delete: terminal, not held, by status and
//   completion time.
// - retention_policies: each tenant's saved policy, as protobuf JSON (proto
//   field names; `{}` = every server default), with a version for its etag.
//   Tenant-first key, row-level security and privileges as on every table.
// - circuit_breaker_transitions by time, for retention.
// - Role `orchestrator_maintenance`: NOLOGIN, no BYPASSRLS, allowed to READ
//   every tenant's rows and nothing else (a SELECT policy for it alone). The
//   server switches to it (SET LOCAL ROLE) for the few statements that must
//   look across tenants: finding the tenants retention must visit, and the
//   aggregate gauges of /metrics (breakers per state, incomplete executions).
//   Every write, retention's deletes included, still runs as
//   `orchestrator_tenant` bound to one tenant. The role is created like
//   `orchestrator_tenant` (20261126030000_row_level_security): only when
//   missing, and granted to the connecting user.

const READ_TABLES = ["workflow_executions", "circuit_breakers", "circuit_breaker_transitions", "routing_decisions", "agent_statistics", "retention_policies"];

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE workflow_executions ADD COLUMN legal_hold boolean NOT NULL DEFAULT false`);
  await knex.raw(`CREATE INDEX workflow_executions_retention_idx
    ON workflow_executions (tenant_id, status, completed_at)
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND NOT legal_hold`);
  await knex.raw(`CREATE INDEX circuit_breaker_transitions_time_idx
    ON circuit_breaker_transitions (tenant_id, transition_time)`);

  await knex.raw(`
    CREATE TABLE retention_policies (
      tenant_id uuid NOT NULL PRIMARY KEY,
      policy jsonb NOT NULL DEFAULT '{}',
      version bigint NOT NULL DEFAULT 1,
      create_time timestamptz NOT NULL DEFAULT now(),
      update_time timestamptz NOT NULL DEFAULT now()
    )`);
  await runEach(knex, tenantIsolation("retention_policies"));

  await knex.raw(`
    DO $$
    BEGIN
${createRoleIfMissing(MAINTENANCE_ROLE)}
      IF NOT pg_has_role(current_user, '${MAINTENANCE_ROLE}', 'MEMBER') THEN
        EXECUTE format('GRANT ${MAINTENANCE_ROLE} TO %I', current_user);
      END IF;
      EXECUTE format('GRANT USAGE ON SCHEMA %I TO ${MAINTENANCE_ROLE}', current_schema());
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'retention needs role ${MAINTENANCE_ROLE}, and % may not create it or grant it to itself', current_user
        USING HINT = format('As a superuser run: CREATE ROLE ${MAINTENANCE_ROLE} NOLOGIN; GRANT ${MAINTENANCE_ROLE} TO %I; then start the server again.', current_user);
    END
    $$`);
  for (const table of READ_TABLES) await runEach(knex, maintenanceRead(table));
}

export async function down(knex: Knex): Promise<void> {
  for (const table of READ_TABLES) {
    await knex.raw(`DROP POLICY IF EXISTS maintenance_read ON ${table}`);
    if (table !== "retention_policies") await knex.raw(`REVOKE ALL ON ${table} FROM ${MAINTENANCE_ROLE}`);
  }
  await knex.raw(`DROP TABLE IF EXISTS retention_policies`);
  await knex.raw(`DROP INDEX IF EXISTS circuit_breaker_transitions_time_idx`);
  await knex.raw(`DROP INDEX IF EXISTS workflow_executions_retention_idx`);
  await knex.raw(`ALTER TABLE workflow_executions DROP COLUMN legal_hold`);
}
