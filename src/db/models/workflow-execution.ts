import { Model } from "objection";

/**
 * One row of `workflow_executions` as the driver returns it: JSONB columns
 * parsed, timestamps and int8 columns as text (see ../database.ts). Both the
 * Objection model and the plain rows of the streaming hot path have this shape.
 */
export interface ExecutionRow {
  tenant_id: string;
  execution_id: string;
  workflow_name: string;
  /** WorkflowStatus name without its prefix, e.g. "RUNNING". */
  status: string;
  definition: object | null;
  context: object | null;
  step_executions: object[];
  step_outputs: Record<string, unknown>;
  error_message: string;
  started_at: string;
  completed_at: string | null;
  initiated_by: string;
  labels: Record<string, string>;
  /** Bumped on every write; exposed as the etag. */
  version: string;
  create_time: string;
  update_time: string;
  /** Legal hold: never deleted while true (retention, DeleteWorkflowExecutions). */
  legal_hold: boolean;
}

/** The JSONB columns of `workflow_executions`. */
export const EXECUTION_JSON_COLUMNS = ["definition", "context", "step_executions", "step_outputs", "labels"] as const;

/**
 * One row of `workflow_executions`: a workflow execution of one tenant.
 * Structured parts are stored as protobuf JSON (proto field names) in JSONB;
 * timestamps and int8 columns are read as text (see ../database.ts).
 */
export class WorkflowExecutionModel extends Model implements ExecutionRow {
  static override tableName = "workflow_executions";
  static override idColumn = ["tenant_id", "execution_id"];
  // Objection serializes these to JSON on write; a JS array would otherwise be
  // sent as a PostgreSQL array.
  static override jsonAttributes = [...EXECUTION_JSON_COLUMNS];

  tenant_id!: string;
  execution_id!: string;
  workflow_name!: string;
  /** WorkflowStatus name without its prefix, e.g. "RUNNING". */
  status!: string;
  definition!: object | null;
  context!: object | null;
  step_executions!: object[];
  step_outputs!: Record<string, unknown>;
  error_message!: string;
  started_at!: string;
  completed_at!: string | null;
  initiated_by!: string;
  labels!: Record<string, string>;
  /** Bumped on every write; exposed as the etag. */
  version!: string;
  create_time!: string;
  update_time!: string;
  legal_hold!: boolean;
}
