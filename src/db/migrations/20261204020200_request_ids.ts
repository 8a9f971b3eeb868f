import type { Knex } from "knex";

// Retries that count once: the `request_id`s of RecordTaskOutcome and
// RecordCallOutcome, each with the answer of its first call
// (src/db/queries/request-ids.ts). One row per (tenant, method, id), kept at
// least 24 hours (`expire_time`); every call that brings a new id first
// deletes up to 10 expired rows of its tenant, so the table holds about a
// day of ids. Row-level security as on every table of ours
// (20261126030000_row_level_security), and the maintenance role's read.

const ROLE = "orchestrator_tenant";
// Reads every tenant's rows, writes none (20261204050000_retention).
const MAINTENANCE_ROLE = "orchestrator_maintenance";
const TENANT_MATCHES = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid";

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE request_ids (
      tenant_id uuid NOT NULL,
      method text NOT NULL,
      request_id text NOT NULL,
      request_hash text NOT NULL,
      response bytea,
      expire_time timestamptz NOT NULL,
      PRIMARY KEY (tenant_id, method, request_id)
    )`);
  await knex.raw(`CREATE INDEX request_ids_expire_time ON request_ids (tenant_id, expire_time)`);
  await knex.raw(`GRANT SELECT, INSERT, UPDATE, DELETE ON request_ids TO ${ROLE}`);
  await knex.raw(`ALTER TABLE request_ids ENABLE ROW LEVEL SECURITY`);
  await knex.raw(`ALTER TABLE request_ids FORCE ROW LEVEL SECURITY`);
  await knex.raw(`CREATE POLICY tenant_isolation ON request_ids USING (${TENANT_MATCHES}) WITH CHECK (${TENANT_MATCHES})`);
  await knex.raw(`GRANT SELECT ON request_ids TO ${MAINTENANCE_ROLE}`);
  await knex.raw(`CREATE POLICY maintenance_read ON request_ids FOR SELECT TO ${MAINTENANCE_ROLE} USING (true)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE request_ids`);
}
