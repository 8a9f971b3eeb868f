import type { Knex } from "knex";
import { maintenanceRead, runEach, tenantIsolation } from "./support/row-security.js";

// A table of its own for the decision ids of the audit, `routing_decision_ids`:
// one narrow row (tenant, decision id, routed_at) per stored decision, with the
// primary key (tenant_id, decision_id) that routing_decisions cannot have.
// Why: routing_decisions is partitioned by routed_at (20261204080000), and a
// unique key on a partitioned table must contain the partition key, so a
// recording took an advisory lock per decision id and then looked for each id
// in every monthly partition: a cost per decision that grew with the months
// kept (B2 in docs/performance.md: 40 -> 57-75 ms of PostgreSQL per 500
// decisions from 5 to 16 partitions). Now the INSERT into this table, ON
// CONFLICT DO NOTHING, is the check and the lock at once, one index probe per
// decision whatever the months (src/db/queries/routing-decisions.ts).
//
// - routed_at is the decision's, so that retention finds the ids of the months
//   it dropped (the index on (tenant_id, routed_at)).
// - Row-level security, the tenant role's grants and the maintenance role's
//   read as on every table of ours.
// - The ids of the stored decisions are copied over (the owner reaches every
//   tenant's rows only without FORCE ROW LEVEL SECURITY: off for the copy, on
//   again in the same transaction, as in 20261205200000).

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE routing_decision_ids (
      tenant_id uuid NOT NULL,
      decision_id uuid NOT NULL,
      routed_at timestamptz NOT NULL,
      PRIMARY KEY (tenant_id, decision_id)
    )`);
  await knex.raw(`CREATE INDEX routing_decision_ids_routed_at_idx ON routing_decision_ids (tenant_id, routed_at)`);
  await runEach(knex, [...tenantIsolation("routing_decision_ids"), ...maintenanceRead("routing_decision_ids")]);

  await knex.raw(`ALTER TABLE routing_decisions NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`ALTER TABLE routing_decision_ids NO FORCE ROW LEVEL SECURITY`);
  await knex.raw(`
    INSERT INTO routing_decision_ids (tenant_id, decision_id, routed_at)
    SELECT tenant_id, decision_id, routed_at FROM routing_decisions
    ON CONFLICT DO NOTHING`);
  await knex.raw(`ALTER TABLE routing_decision_ids FORCE ROW LEVEL SECURITY`);
  await knex.raw(`ALTER TABLE routing_decisions FORCE ROW LEVEL SECURITY`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE routing_decision_ids`);
}
