import type { Knex } from "knex";
import { createDatabase } from "../../../src/db/database.js";
import { silentLogger } from "../../../src/logging/logger.js";
import { createTestDatabase, postgresOptions } from "../../support/backend.js";

// Helpers of the tenant unit tests (tenant-unit.test.ts, tenant-unit.postgres.test.ts).

const url = process.env.TEST_DATABASE_URL;

/**
 * A database with exactly one connection (PGlite only ever has one). On
 * PostgreSQL, `named` connects to PostgreSQL itself (TEST_DATABASE_DIRECT_URL
 * when the tests run through a transaction-mode pooler) with named binding
 * statements, or through TEST_DATABASE_URL with them off (false); by default
 * as every test database is made. `pipelined` false: tenant units take the
 * default path of public APIs (DATABASE_PIPELINED_UNITS=false).
 */
export async function singleConnection(named?: boolean, pipelined?: boolean): Promise<Knex> {
  if (url === undefined) return createTestDatabase();
  const pipelinedUnits = pipelined ?? true;
  if (named === undefined) return createDatabase({ ...postgresOptions(url), poolMax: 1, logger: silentLogger, pipelinedUnits });
  const databaseUrl = named ? (process.env.TEST_DATABASE_DIRECT_URL || url) : url;
  return createDatabase({ databaseUrl, preparedStatements: named, poolMax: 1, logger: silentLogger, pipelinedUnits });
}

/** The paths a tenant unit can take on this backend: pipelined (PostgreSQL only) and the default one. */
export const unitPaths: { path: "pipelined" | "default"; pipelined: boolean }[] =
  url === undefined ? [{ path: "default", pipelined: false }] : [{ path: "pipelined", pipelined: true }, { path: "default", pipelined: false }];

export interface SessionState {
  role: string;
  tenant: string | null;
  /** statement_timeout in ms ("0": none). */
  timeout: string;
  /** max_parallel_workers_per_gather. */
  parallel: string;
  /** enable_seqscan. */
  seqscan: string;
}

const STATE_SQL = `SELECT current_user AS role, NULLIF(current_setting('app.tenant_id', true), '') AS tenant,
  (SELECT setting FROM pg_settings WHERE name = 'statement_timeout') AS timeout,
  current_setting('max_parallel_workers_per_gather') AS parallel, current_setting('enable_seqscan') AS seqscan`;

/** What a statement on `db` runs as. */
export async function state(db: Knex | Knex.Transaction): Promise<SessionState> {
  return (await db.raw<{ rows: SessionState[] }>(STATE_SQL)).rows[0]!;
}

/** The state of the pooled connection, outside any unit, and whether a transaction is left open on it. */
export async function pooledState(knex: Knex): Promise<SessionState & { inTransaction: boolean }> {
  // The first statement takes a transaction id; the second still has one only
  // if both ran in the same transaction, i.e. one was left open.
  await knex.raw("SELECT pg_current_xact_id()");
  const { rows: [open] } = await knex.raw<{ rows: { open: boolean }[] }>("SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS open");
  return { ...(await state(knex)), inTransaction: open!.open };
}

export async function countOwnRows(knex: Knex, tenant: string): Promise<number> {
  // As the login user (a superuser, or BYPASSRLS): every row of the tenant.
  return Number((await knex("workflow_executions").where("tenant_id", tenant).count<{ n: string }[]>({ n: "*" }))[0]!.n);
}

export const insertExecution = (db: Knex | Knex.Transaction, tenant: string, id: string) =>
  db.raw(`INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, started_at) VALUES (?, ?, 'w', 'RUNNING', now())`, [tenant, id]);

