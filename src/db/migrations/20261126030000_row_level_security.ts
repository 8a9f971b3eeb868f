import type { Knex } from "knex";
import { createRoleIfMissing, runEach, TENANT_ROLE, tenantIsolation } from "./support/row-security.js";

// Row-level security on every table of ours, so that a query that forgets its
// tenant filter still sees and changes only the rows of the tenant its
// transaction is bound to (src/tenancy/row-level-security.ts).
//
// - Role `orchestrator_tenant`: NOLOGIN, neither superuser nor BYPASSRLS. The
//   application switches to it in every transaction (`SET LOCAL ROLE`), because
//   superusers, and CI and PGlite connect as one, skip every policy. Roles
//   belong to the whole cluster, so it is created only when missing (several
//   databases, or replicas, may migrate at once). The connecting user must be a
//   member of it: a superuser is; a user with CREATEROLE grants it to itself
//   here; any other user stops this migration with a message saying what a
//   superuser must run (README, "Isolation inside the database").
// - Each table: ENABLE and FORCE ROW LEVEL SECURITY (FORCE binds the table
//   owner too, so the application's own login user, when it owns the tables
//   and is not a superuser, sees nothing outside a tenant transaction), and one
//   policy for every command: tenant_id must equal `app.tenant_id`, for the rows
//   read (USING) and the rows written (WITH CHECK). Without the setting (NULL,
//   or '' once a transaction that set it has ended) no row matches.
// - The role gets exactly the privileges the queries use: SELECT, INSERT,
//   UPDATE, DELETE (no TRUNCATE). The identity of circuit_breaker_transitions
//   needs no sequence privilege. The NOTIFY trigger runs as the invoking role;
//   pg_notify is open to everyone.
//
// Migrations run as the connecting user, outside any tenant transaction: a
// later migration that reads or changes rows must do so as a superuser or
// through a role with BYPASSRLS, or it sees no rows.

const TABLES = [
  "workflow_executions",
  "circuit_breakers",
  "circuit_breaker_transitions",
  "routing_decisions",
  "agent_statistics",
];
const POLICY = "tenant_isolation";

// Before creating the role: a user that may not create roles stops here, with what a superuser must run.
const MAY_CREATE_ROLES = `        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
          RAISE EXCEPTION 'row-level security needs role ${TENANT_ROLE}, which does not exist, and % may not create roles', current_user
            USING HINT = format('As a superuser run: CREATE ROLE ${TENANT_ROLE} NOLOGIN; GRANT ${TENANT_ROLE} TO %I; then start the server again.', current_user);
        END IF;`;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    DO $$
    BEGIN
${createRoleIfMissing(TENANT_ROLE, MAY_CREATE_ROLES)}
      IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = '${TENANT_ROLE}') THEN
        RAISE EXCEPTION 'role ${TENANT_ROLE} is a superuser or has BYPASSRLS: row-level security would not bind it'
          USING HINT = 'As a superuser run: ALTER ROLE ${TENANT_ROLE} NOSUPERUSER NOBYPASSRLS;';
      END IF;
      IF NOT pg_has_role(current_user, '${TENANT_ROLE}', 'MEMBER') THEN
        BEGIN
          EXECUTE format('GRANT ${TENANT_ROLE} TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
          RAISE EXCEPTION 'row-level security needs % to be a member of role ${TENANT_ROLE}, and it may not grant that itself', current_user
            USING HINT = format('As a superuser run: GRANT ${TENANT_ROLE} TO %I; then start the server again.', current_user);
        END;
      END IF;
      EXECUTE format('GRANT USAGE ON SCHEMA %I TO ${TENANT_ROLE}', current_schema());
    END
    $$`);
  for (const table of TABLES) await runEach(knex, tenantIsolation(table));
}

export async function down(knex: Knex): Promise<void> {
  // The role stays: it belongs to the cluster, and other databases may use it.
  for (const table of TABLES) {
    await knex.raw(`DROP POLICY IF EXISTS ${POLICY} ON ${table}`);
    await knex.raw(`ALTER TABLE ${table} NO FORCE ROW LEVEL SECURITY`);
    await knex.raw(`ALTER TABLE ${table} DISABLE ROW LEVEL SECURITY`);
    await knex.raw(`REVOKE ALL ON ${table} FROM ${TENANT_ROLE}`);
  }
}
