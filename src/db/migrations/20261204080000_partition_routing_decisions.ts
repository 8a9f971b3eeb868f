import type { Knex } from "knex";
import { ensureDecisionPartitions } from "../queries/decision-partitions.js";
import { createDecisionIndexes } from "./support/decision-indexes.js";
import { maintenanceRead, runEach, tenantIsolation } from "./support/row-security.js";

// routing_decisions becomes a table partitioned by routed_at (native
// declarative partitioning, PostgreSQL and PGlite alike): one partition per
// UTC month plus a default partition (src/db/queries/decision-partitions.ts),
// so that retention drops whole months instead of deleting rows one by one
// (which bloats the table), and a query over a time range reads only the
// months it covers.
//
// The conversion keeps every row and column (stored_bytes stays generated,
// with the same expression as in 20261204030000_stored_bytes), every index,
// the CHECK constraint, the grants and both row-level security policies
// (20261126030000_row_level_security, 20261204050000_retention). It copies
// the rows: months with rows get their partition first (recent ones; older
// rows go to the default partition), and the indexes are built after the
// copy. The audit is locked (ACCESS EXCLUSIVE) for the whole migration, which
// takes time in proportion to the table (docs/scaling.md).
//
// A primary key of a partitioned table must contain the partition key: it is
// now (tenant_id, decision_id, routed_at). A decision_id stayed unique per
// tenant because recording took a transaction-level advisory lock per
// (tenant, decision_id) and inserted only ids not stored in any month; since
// 20261205300000_routing_decision_ids, a table of the ids keeps them unique
// (src/db/queries/routing-decisions.ts).
//
// The partitions themselves have no row-level security and no grants: the
// tenant and maintenance roles reach rows only through routing_decisions,
// whose policies apply to every partition read or written through it.

const OLD = "routing_decisions_unpartitioned";

const DECISION_BYTES = `
  octet_length(task_id) + octet_length(task_type) + octet_length(required_capability) + octet_length(selected_agent)
  + octet_length(error_message) + octet_length(workflow_execution_id) + octet_length(step_id)
  + octet_length(candidates::text)
  + 64`;

const COLUMNS = `tenant_id, decision_id, task_id, task_type, required_capability, selected_agent, priority, agent_score,
  candidates, success, error_message, retry_attempts, routing_duration_us, routed_at, workflow_execution_id, step_id,
  create_time, task_duration_us, content_hash`;

/** The table's columns and CHECK constraint, in the order the earlier migrations made them. */
const DEFINITION = `(
  tenant_id uuid NOT NULL,
  decision_id uuid NOT NULL,
  task_id text NOT NULL,
  task_type text NOT NULL DEFAULT '',
  required_capability text NOT NULL DEFAULT '',
  selected_agent text NOT NULL,
  priority integer NOT NULL DEFAULT 0,
  agent_score double precision NOT NULL DEFAULT 0,
  candidates jsonb NOT NULL DEFAULT '[]',
  success boolean NOT NULL,
  error_message text NOT NULL DEFAULT '',
  retry_attempts integer NOT NULL DEFAULT 0,
  routing_duration_us bigint NOT NULL DEFAULT 0,
  routed_at timestamptz NOT NULL,
  workflow_execution_id text NOT NULL DEFAULT '',
  step_id text NOT NULL DEFAULT '',
  create_time timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
  task_duration_us bigint NOT NULL DEFAULT 0,
  content_hash text NOT NULL DEFAULT '',
  stored_bytes bigint GENERATED ALWAYS AS (${DECISION_BYTES}) STORED,
  CONSTRAINT routing_decisions_durations_check
    CHECK (routing_duration_us >= 0 AND task_duration_us >= 0 AND retry_attempts >= 0)
)`;

/** Key, indexes, grants and row-level security of routing_decisions, after its rows are in. */
async function finish(knex: Knex, key: string): Promise<void> {
  await knex.raw(`ALTER TABLE routing_decisions ADD CONSTRAINT routing_decisions_pkey PRIMARY KEY (${key})`);
  await createDecisionIndexes(knex);
  const [grantTenant, ...rowSecurity] = tenantIsolation("routing_decisions");
  const [grantMaintenance, readPolicy] = maintenanceRead("routing_decisions");
  // Both grants first: the order in which this migration has always run them.
  await runEach(knex, [grantTenant, grantMaintenance, ...rowSecurity, readPolicy]);
}

export async function up(knex: Knex): Promise<void> {
  // The owner (the migrating user, when not a superuser) reads the old rows
  // only without FORCE; the new table gets its policies after the copy.
  await knex.raw(`ALTER TABLE routing_decisions NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`ALTER TABLE routing_decisions RENAME TO ${OLD}`);
  await knex.raw(`CREATE TABLE routing_decisions ${DEFINITION} PARTITION BY RANGE (routed_at)`);
  await knex.raw(`CREATE TABLE routing_decisions_default PARTITION OF routing_decisions DEFAULT`);
  await ensureDecisionPartitions(knex, new Date(), OLD);
  await knex.raw(`INSERT INTO routing_decisions (${COLUMNS}) SELECT ${COLUMNS} FROM ${OLD}`);
  await knex.raw(`DROP TABLE ${OLD}`);
  await finish(knex, "tenant_id, decision_id, routed_at");
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE routing_decisions NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`ALTER TABLE routing_decisions RENAME TO ${OLD}`);
  await knex.raw(`CREATE TABLE routing_decisions ${DEFINITION}`);
  await knex.raw(`INSERT INTO routing_decisions (${COLUMNS}) SELECT ${COLUMNS} FROM ${OLD}`);
  await knex.raw(`DROP TABLE ${OLD}`);
  await finish(knex, "tenant_id, decision_id");
}
