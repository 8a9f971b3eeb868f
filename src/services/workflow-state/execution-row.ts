import { create, fromJson, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  type Lease,
  LeaseSchema,
  StepExecutionSchema,
  WorkflowDefinitionSchema,
  type WorkflowExecution,
  WorkflowExecutionSchema,
  WorkflowStatus,
} from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { optionalTimestampFromDb, timestampFromDb } from "../../db/convert.js";
import type { ExecutionRow } from "../../db/models/workflow-execution.js";
import { jsonValueOf } from "../../db/models/plain-rows.js";
import { etagOf } from "../../etags/etag.js";

// The one place where a WorkflowExecution message and a workflow_executions row
// are converted into each other. Structured parts are stored as protobuf JSON
// with proto field names (readable with SQL, and lossless: JSON keeps
// nanosecond timestamps and every Struct value).

const jsonOptions = { useProtoFieldName: true } as const;

/** Statuses of executions still to be worked on; StreamIncompleteWorkflows returns these. */
export const INCOMPLETE_STATUSES = [WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.BLOCKED] as const;
/** Statuses of finished executions; only these can be deleted. */
export const TERMINAL_STATUSES = [WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED] as const;

/** The status column's value ("RUNNING") of a WorkflowStatus. */
export function statusToDb(status: WorkflowStatus): string {
  return WorkflowStatus[status];
}

/** Whether a status is terminal (COMPLETED, FAILED, CANCELLED). */
export function isTerminal(status: WorkflowStatus): boolean {
  return (TERMINAL_STATUSES as readonly WorkflowStatus[]).includes(status);
}

/**
 * The columns a save writes, from a validated execution. Server-managed columns
 * (tenant, times, version) are left to the query.
 */
export function executionToColumns(e: WorkflowExecution) {
  return {
    execution_id: e.executionId,
    workflow_name: e.workflowName,
    status: statusToDb(e.status),
    definition: e.definition === undefined ? null : (toJson(WorkflowDefinitionSchema, e.definition, jsonOptions) as JsonObject),
    context: e.context ?? null,
    step_executions: e.stepExecutions.map((s) => toJson(StepExecutionSchema, s, jsonOptions) as JsonObject),
    step_outputs: Object.fromEntries(
      Object.entries(e.stepOutputs).map(([stepId, value]) => [stepId, toJson(ValueSchema, value)]),
    ),
    error_message: e.errorMessage,
    initiated_by: e.initiatedBy,
    labels: { ...e.labels },
  };
}

/** The WorkflowExecution message of a stored row, with its etag and server times. */
export function executionFromRow(row: ExecutionRow): WorkflowExecution {
  return create(WorkflowExecutionSchema, {
    executionId: row.execution_id,
    workflowName: row.workflow_name,
    status: WorkflowStatus[row.status as keyof typeof WorkflowStatus],
    definition: row.definition === null ? undefined : fromJson(WorkflowDefinitionSchema, row.definition as JsonValue),
    context: (jsonValueOf(row.context) ?? undefined) as JsonObject | undefined,
    stepExecutions: row.step_executions.map((s) => fromJson(StepExecutionSchema, s as JsonValue)),
    stepOutputs: Object.fromEntries(
      Object.entries(row.step_outputs).map(([stepId, value]) => [stepId, fromJson(ValueSchema, value as JsonValue)]),
    ),
    errorMessage: row.error_message,
    startedAt: timestampFromDb(row.started_at),
    completedAt: optionalTimestampFromDb(row.completed_at),
    initiatedBy: row.initiated_by,
    labels: row.labels,
    etag: etagOf(row.version),
    createTime: timestampFromDb(row.create_time),
    updateTime: timestampFromDb(row.update_time),
    // Set only while held (see the field's contract): a client saving back
    // what it read then never lifts a hold set meanwhile by someone else.
    legalHold: row.legal_hold === true ? true : undefined,
    lease: leaseFromRow(row),
  });
}

/** The Lease message of a row's lease columns, or undefined when it has none. */
export function leaseFromRow(row: ExecutionRow): Lease | undefined {
  if (row.lease_token === null || row.lease_token === undefined) return undefined;
  return create(LeaseSchema, {
    owner: row.lease_owner ?? "",
    fencingToken: BigInt(row.lease_token),
    expireTime: timestampFromDb(row.lease_expire_time!),
  });
}
