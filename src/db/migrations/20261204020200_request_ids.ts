import type { Knex } from "knex";
import { maintenanceRead, runEach, tenantIsolation } from "./support/row-security.js";

// Retries that count once: the `request_id`s of RecordTaskOutcome and
// RecordCallOutcome, each with the answer of its first call
// (src/db/queries/request-ids.ts). One row per (tenant, method, id), kept at
// least 24 hours (`expire_time`); every call that brings a new id first
// deletes up to 10 expired rows of its tenant, so the table holds about a
// day of ids. Row-level security as on every table of ours
// (20261126030000_row_level_security), and the maintenance role's read.

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
  await runEach(knex, [...tenantIsolation("request_ids"), ...maintenanceRead("request_ids")]);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE request_ids`);
}
