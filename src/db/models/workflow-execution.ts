import { Model } from "objection";

/**
 * One row of `workflow_executions`: a workflow execution of one tenant.
 * Structured parts are stored as protobuf JSON (proto field names) in JSONB;
 * timestamps and int8 columns are read as text (see ../database.ts).
 */
export class WorkflowExecutionModel extends Model {
  static override tableName = "workflow_executions";
  static override idColumn = ["tenant_id", "execution_id"];
  // Objection serializes these to JSON on write; a JS array would otherwise be
  // sent as a PostgreSQL array.
  static override jsonAttributes = ["definition", "context", "step_executions", "step_outputs", "labels"];

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
}
