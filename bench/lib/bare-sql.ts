import type { DecisionColumns } from "../../src/db/queries/routing-decisions.js";

// The bare statements of the raw-pg baselines (bench/baselines/pg-workloads.ts,
// bench/rls-cost.ts) and of the peer (bench/baselines/peer-server.ts), positional: what our queries in src/db/queries send,
// without tenant binding or ORM. One exception: since December 5 our
// recording of a decision also inserts its id into routing_decision_ids
// (src/db/queries/routing-decisions.ts); INSERT_DECISION and
// INSERT_DECISIONS_UNNEST write the decisions only, as before, so that B1's
// and B2's baselines compare with the runs of docs/performance.md made before
// that (ours carries the second insert in every ratio since).

export const SELECT_EXECUTION = "SELECT * FROM workflow_executions WHERE tenant_id = $1 AND execution_id = $2";
export const UPSERT_EXECUTION = `INSERT INTO workflow_executions AS t
    (tenant_id, execution_id, workflow_name, status, definition, context, step_executions, step_outputs,
     error_message, initiated_by, labels, started_at, completed_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now(), NULL)
  ON CONFLICT (tenant_id, execution_id) DO UPDATE SET
    workflow_name = EXCLUDED.workflow_name, status = EXCLUDED.status, definition = EXCLUDED.definition,
    context = EXCLUDED.context, step_executions = EXCLUDED.step_executions, step_outputs = EXCLUDED.step_outputs,
    error_message = EXCLUDED.error_message, initiated_by = EXCLUDED.initiated_by, labels = EXCLUDED.labels,
    started_at = t.started_at, completed_at = NULL, version = t.version + 1, update_time = now()
  RETURNING *`;
export const ADD_OUTCOME = `INSERT INTO agent_statistics AS t
    (tenant_id, agent_key, total_tasks, successful_tasks, failed_tasks, total_duration_us, last_task_time)
  VALUES ($1, $2, 1, $3, $4, $5, now())
  ON CONFLICT (tenant_id, agent_key) DO UPDATE SET
    total_tasks = t.total_tasks + EXCLUDED.total_tasks,
    successful_tasks = t.successful_tasks + EXCLUDED.successful_tasks,
    failed_tasks = t.failed_tasks + EXCLUDED.failed_tasks,
    total_duration_us = t.total_duration_us + EXCLUDED.total_duration_us,
    last_task_time = GREATEST(t.last_task_time, EXCLUDED.last_task_time),
    version = t.version + 1, update_time = now()
  RETURNING *`;

export const DECISION_COLUMNS = [
  "decision_id", "task_id", "task_type", "required_capability", "selected_agent", "priority", "agent_score", "candidates",
  "success", "error_message", "retry_attempts", "routing_duration_us", "task_duration_us", "routed_at",
  "workflow_execution_id", "step_id", "content_hash",
] as const;
const DECISION_TYPES = [
  "uuid", "text", "text", "text", "text", "int4", "float8", "jsonb", "bool", "text", "int4", "int8", "int8", "timestamptz",
  "text", "text", "text",
];

/** The parameters of one decision's row, in DECISION_COLUMNS order (tenant not included). */
export function decisionParameters(c: DecisionColumns): unknown[] {
  const row = c as unknown as Record<string, unknown>;
  return DECISION_COLUMNS.map((name) => (name === "candidates" ? JSON.stringify(row[name]) : row[name]));
}

export const INSERT_DECISION = `INSERT INTO routing_decisions (tenant_id, ${DECISION_COLUMNS.join(", ")})
  VALUES ($1, ${DECISION_COLUMNS.map((_, k) => `$${k + 2}`).join(", ")})`;

// The fastest bulk insert from pg: one array parameter per column, UNNEST.
export const INSERT_DECISIONS_UNNEST = `INSERT INTO routing_decisions (tenant_id, ${DECISION_COLUMNS.join(", ")})
  SELECT $1, * FROM unnest(${DECISION_TYPES.map((t, k) => `$${k + 2}::${t}[]`).join(", ")})`;
