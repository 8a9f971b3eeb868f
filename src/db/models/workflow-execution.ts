import { tenantTable } from "./tenant-table.js";
import type { JsonText, RowOf } from "./plain-rows.js";
import type { LeaseColumns } from "./execution-lease.js";

/**
 * One row of `workflow_executions`: a workflow execution of one tenant.
 * Structured parts are stored as protobuf JSON (proto field names) in JSONB;
 * timestamps and int8 columns are read as text (see ../database.ts).
 */
export class WorkflowExecutionModel extends tenantTable("workflow_executions", "execution_id") {
  // Objection serializes these to JSON on write; a JS array would otherwise be
  // sent as a PostgreSQL array.
  static override jsonAttributes = ["definition", "context", "step_executions", "step_outputs", "labels"];

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
  /** A new value of row_version_seq on every write (never repeats); exposed as the etag. */
  version!: string;
  create_time!: string;
  update_time!: string;
  /** Legal hold: never deleted while true (retention, DeleteWorkflowExecutions). */
  legal_hold!: boolean;
  /** What the row weighs against the byte budgets of pages and streams (generated; see migration 20261204030000). */
  stored_bytes!: string;
}

/**
 * One row of `workflow_executions` as a plain object (see ./plain-rows.ts),
 * with its lease joined from `execution_leases` (./execution-lease.ts): what
 * the hot paths (save, get, list, stream, claim) read and encode. The reads
 * of one execution, of pages and of streams keep `context` as its jsonb text
 * (a JsonText; see KEEP_TEXT in ../queries/workflow-executions.ts).
 */
export type ExecutionRow = Omit<RowOf<WorkflowExecutionModel>, "context"> & { context: RowOf<WorkflowExecutionModel>["context"] | JsonText } & LeaseColumns;
