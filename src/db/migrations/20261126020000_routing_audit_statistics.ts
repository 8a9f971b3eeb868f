import type { Knex } from "knex";

// What RoutingAuditService and StatisticsService need beyond the initial schema:
//
// - routing_decisions.task_duration_us: how long the task ran on the selected
//   agent. Statistics average this duration (not the routing duration), so that
//   RecalculateStatistics can rebuild exactly what the `update_statistics` path
//   and RecordTaskOutcome accumulate.
// - routing_decisions.content_hash: SHA-256 of a decision's stored content
//   (everything but its id and create_time). A retried RecordRoutingDecision
//   with the same decision_id is accepted only when the hashes are equal.
//   Decisions are never updated, so the hash never goes stale.
// - CHECK constraints on the values the services validate, as a last line of
//   defence for counters that are only ever incremented.

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE routing_decisions
      ADD COLUMN task_duration_us bigint NOT NULL DEFAULT 0,
      ADD COLUMN content_hash text NOT NULL DEFAULT '',
      ADD CONSTRAINT routing_decisions_durations_check
        CHECK (routing_duration_us >= 0 AND task_duration_us >= 0 AND retry_attempts >= 0)`);
  await knex.raw(`
    ALTER TABLE agent_statistics
      ADD CONSTRAINT agent_statistics_counters_check
        CHECK (successful_tasks >= 0 AND failed_tasks >= 0 AND total_duration_us >= 0)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE agent_statistics DROP CONSTRAINT agent_statistics_counters_check`);
  await knex.raw(`
    ALTER TABLE routing_decisions
      DROP CONSTRAINT routing_decisions_durations_check,
      DROP COLUMN content_hash,
      DROP COLUMN task_duration_us`);
}
