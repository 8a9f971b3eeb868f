import type { Knex } from "knex";
import { createDecisionIndexes } from "./support/decision-indexes.js";

// The first schema: one table per resource of the contract. Every primary key
// and every index leads with tenant_id, because every query is scoped to one
// tenant and two tenants may choose the same ids.
//
// Status and state columns hold the enum value's name without its prefix
// ('RUNNING', 'OPEN'), so that operators can read them in psql.

const INCOMPLETE = "status IN ('PENDING', 'RUNNING', 'BLOCKED')";
const TERMINAL = "status IN ('COMPLETED', 'FAILED', 'CANCELLED')";

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("workflow_executions", (t) => {
    t.uuid("tenant_id").notNullable();
    t.text("execution_id").notNullable();
    t.text("workflow_name").notNullable();
    t.text("status").notNullable();
    t.jsonb("definition");
    t.jsonb("context");
    t.jsonb("step_executions").notNullable().defaultTo("[]");
    t.jsonb("step_outputs").notNullable().defaultTo("{}");
    t.text("error_message").notNullable().defaultTo("");
    t.specificType("started_at", "timestamptz").notNullable();
    t.specificType("completed_at", "timestamptz");
    t.text("initiated_by").notNullable().defaultTo("");
    t.jsonb("labels").notNullable().defaultTo("{}");
    // Optimistic concurrency: bumped on every write, exposed as the etag.
    t.bigInteger("version").notNullable().defaultTo(1);
    t.specificType("create_time", "timestamptz").notNullable().defaultTo(knex.fn.now());
    t.specificType("update_time", "timestamptz").notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "execution_id"]);
  });
  await knex.raw(`
    ALTER TABLE workflow_executions
      ADD CONSTRAINT workflow_executions_status_check
        CHECK (status IN ('PENDING', 'RUNNING', 'BLOCKED', 'COMPLETED', 'FAILED', 'CANCELLED')),
      ADD CONSTRAINT workflow_executions_completed_at_check
        CHECK (completed_at IS NULL OR ${TERMINAL})`);
  // ListWorkflowExecutions: newest first, optionally by workflow name.
  await knex.raw(`CREATE INDEX workflow_executions_list_idx
    ON workflow_executions (tenant_id, started_at DESC, execution_id DESC)`);
  await knex.raw(`CREATE INDEX workflow_executions_list_by_name_idx
    ON workflow_executions (tenant_id, workflow_name, started_at DESC, execution_id DESC)`);
  // StreamIncompleteWorkflows: oldest first over the incomplete rows only, which
  // stay a small part of the table, so the partial indexes stay small too.
  await knex.raw(`CREATE INDEX workflow_executions_incomplete_idx
    ON workflow_executions (tenant_id, started_at, execution_id) WHERE ${INCOMPLETE}`);
  await knex.raw(`CREATE INDEX workflow_executions_incomplete_by_name_idx
    ON workflow_executions (tenant_id, workflow_name, started_at, execution_id) WHERE ${INCOMPLETE}`);
  // DeleteWorkflowExecutions: terminal rows by completion time.
  await knex.raw(`CREATE INDEX workflow_executions_completed_idx
    ON workflow_executions (tenant_id, completed_at) WHERE ${TERMINAL}`);

  await knex.schema.createTable("circuit_breakers", (t) => {
    t.uuid("tenant_id").notNullable();
    t.text("agent_key").notNullable();
    t.text("state").notNullable();
    t.bigInteger("failure_count").notNullable().defaultTo(0);
    t.bigInteger("success_count").notNullable().defaultTo(0);
    t.specificType("opened_at", "timestamptz");
    t.specificType("reset_at", "timestamptz");
    t.bigInteger("version").notNullable().defaultTo(1);
    t.specificType("create_time", "timestamptz").notNullable().defaultTo(knex.fn.now());
    t.specificType("update_time", "timestamptz").notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "agent_key"]);
  });
  await knex.raw(`ALTER TABLE circuit_breakers ADD CONSTRAINT circuit_breakers_state_check
    CHECK (state IN ('CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED'))`);
  // ListCircuitBreakerStates by state; RecoverCircuitBreakers over OPEN ones by
  // reset time; DeleteCircuitBreakerStates over CLOSED ones by update time.
  await knex.raw(`CREATE INDEX circuit_breakers_state_idx ON circuit_breakers (tenant_id, state, agent_key)`);
  await knex.raw(`CREATE INDEX circuit_breakers_open_reset_idx
    ON circuit_breakers (tenant_id, reset_at) WHERE state = 'OPEN'`);
  await knex.raw(`CREATE INDEX circuit_breakers_closed_update_idx
    ON circuit_breakers (tenant_id, update_time) WHERE state = 'CLOSED'`);

  await knex.schema.createTable("routing_decisions", (t) => {
    t.uuid("tenant_id").notNullable();
    t.uuid("decision_id").notNullable();
    t.text("task_id").notNullable();
    t.text("task_type").notNullable().defaultTo("");
    t.text("required_capability").notNullable().defaultTo("");
    t.text("selected_agent").notNullable();
    t.integer("priority").notNullable().defaultTo(0);
    t.double("agent_score").notNullable().defaultTo(0);
    t.jsonb("candidates").notNullable().defaultTo("[]");
    t.boolean("success").notNullable();
    t.text("error_message").notNullable().defaultTo("");
    t.integer("retry_attempts").notNullable().defaultTo(0);
    // Microseconds, so that averages and percentiles are plain SQL.
    t.bigInteger("routing_duration_us").notNullable().defaultTo(0);
    t.specificType("routed_at", "timestamptz").notNullable();
    t.text("workflow_execution_id").notNullable().defaultTo("");
    t.text("step_id").notNullable().defaultTo("");
    t.specificType("create_time", "timestamptz").notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "decision_id"]);
  });
  await createDecisionIndexes(knex);

  await knex.schema.createTable("agent_statistics", (t) => {
    t.uuid("tenant_id").notNullable();
    t.text("agent_key").notNullable();
    t.bigInteger("total_tasks").notNullable().defaultTo(0);
    t.bigInteger("successful_tasks").notNullable().defaultTo(0);
    t.bigInteger("failed_tasks").notNullable().defaultTo(0);
    t.bigInteger("total_duration_us").notNullable().defaultTo(0);
    t.specificType("last_task_time", "timestamptz");
    t.bigInteger("version").notNullable().defaultTo(1);
    t.specificType("update_time", "timestamptz").notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "agent_key"]);
  });
  await knex.raw(`ALTER TABLE agent_statistics ADD CONSTRAINT agent_statistics_totals_check
    CHECK (total_tasks = successful_tasks + failed_tasks)`);
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ["agent_statistics", "routing_decisions", "circuit_breakers", "workflow_executions"]) {
    await knex.schema.dropTableIfExists(table);
  }
}
