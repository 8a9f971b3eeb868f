import type { Knex } from "knex";

// The statements by which migrations give a table row-level security and its
// roles their privileges (20261126030000_row_level_security,
// 20261204050000_retention), in one place, so that every table of ours is
// secured the same way. Databases have already run the migrations that call
// these: the SQL a function returns must never change, byte for byte. A new
// way of securing a table is a new function.

/** The role every tenant unit switches to (src/tenancy/row-level-security.ts): no BYPASSRLS, bound by the policies. */
export const TENANT_ROLE = "orchestrator_tenant";
/** The role that reads every tenant's rows and writes none (src/db/queries/maintenance.ts). */
export const MAINTENANCE_ROLE = "orchestrator_maintenance";
/**
 * A row belongs to the tenant the transaction is bound to (`app.tenant_id`).
 * Without the setting (NULL, or '' once a transaction that set it has ended)
 * no row matches.
 */
export const TENANT_MATCHES = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid";

/**
 * The statements that bind `table` to its tenant: the tenant role's
 * privileges (exactly what the queries use: no TRUNCATE), row-level security
 * enabled and forced (FORCE binds the table's owner too), and the one policy
 * for every command, on the rows read (USING) and written (WITH CHECK).
 */
export function tenantIsolation(table: string): [grant: string, ...rowSecurity: string[]] {
  return [
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ${table} TO ${TENANT_ROLE}`,
    `ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY`,
    `ALTER TABLE ${table} FORCE ROW LEVEL SECURITY`,
    `CREATE POLICY tenant_isolation ON ${table} USING (${TENANT_MATCHES}) WITH CHECK (${TENANT_MATCHES})`,
  ];
}

/** The statements that let the maintenance role read every row of `table`: its privilege, then its policy. */
export function maintenanceRead(table: string): [grant: string, policy: string] {
  return [
    `GRANT SELECT ON ${table} TO ${MAINTENANCE_ROLE}`,
    `CREATE POLICY maintenance_read ON ${table} FOR SELECT TO ${MAINTENANCE_ROLE} USING (true)`,
  ];
}

/** Runs `statements` one after the other. */
export async function runEach(knex: Knex, statements: readonly string[]): Promise<void> {
  for (const statement of statements) await knex.raw(statement);
}

/**
 * PL/pgSQL, for a DO block, that creates `role` (NOLOGIN, neither superuser
 * nor BYPASSRLS) when the cluster has no such role. Roles belong to the whole
 * cluster, so several databases (or replicas) may migrate at once: the one
 * that loses the race finds the role created. `whenMissing` (PL/pgSQL lines,
 * indented as the CREATE's BEGIN) runs before the CREATE, only when the role
 * is missing.
 */
export function createRoleIfMissing(role: string, whenMissing?: string): string {
  return `      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN
${whenMissing === undefined ? "" : `${whenMissing}\n`}        BEGIN
          CREATE ROLE ${role} NOLOGIN NOSUPERUSER NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
          NULL; -- created meanwhile by a migration of another database of this cluster
        END;
      END IF;`;
}
