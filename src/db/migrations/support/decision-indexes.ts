import type { Knex } from "knex";

// The indexes of routing_decisions, made by the initial schema and made again
// by 20261204080000_partition_routing_decisions on the partitioned table (and
// on the unpartitioned one when that migration is rolled back). Databases have
// already run both: the statements must never change (see row-security.ts).

/**
 * Creates the indexes of ListRoutingDecisions (newest first, by each filter),
 * SummarizeAgentDecisions and DeleteRoutingDecisions (by routed time).
 */
export async function createDecisionIndexes(knex: Knex): Promise<void> {
  await knex.raw(`CREATE INDEX routing_decisions_list_idx
    ON routing_decisions (tenant_id, routed_at DESC, decision_id DESC)`);
  await knex.raw(`CREATE INDEX routing_decisions_task_idx
    ON routing_decisions (tenant_id, task_id, routed_at DESC, decision_id DESC)`);
  await knex.raw(`CREATE INDEX routing_decisions_task_type_idx
    ON routing_decisions (tenant_id, task_type, routed_at DESC, decision_id DESC)`);
  await knex.raw(`CREATE INDEX routing_decisions_agent_idx
    ON routing_decisions (tenant_id, selected_agent, routed_at DESC, decision_id DESC)`);
  await knex.raw(`CREATE INDEX routing_decisions_workflow_idx
    ON routing_decisions (tenant_id, workflow_execution_id, step_id, routed_at DESC, decision_id DESC)`);
}
