import type { Duration } from "@bufbuild/protobuf/wkt";
import {
  type ClaimIncompleteWorkflowsRequest,
  type DeleteWorkflowExecutionsRequest,
  type HeldLease,
  type ReleaseLeasesRequest,
  type RenewLeasesRequest,
  type GetWorkflowExecutionRequest,
  type ListWorkflowExecutionsRequest,
  type SaveWorkflowExecutionRequest,
  type StreamIncompleteWorkflowsRequest,
  type WorkflowExecution,
  WorkflowStatus,
} from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { invalidArgument } from "../../errors/invalid-argument.js";
import { validateFields, Violations } from "../../validation/checks.js";
import { MAX_COUNT_FIELD, MAX_ERROR_MESSAGE, MAX_ID, MAX_NAME, MAX_PAGE_TOKEN } from "../../validation/field-limits.js";
import { isTerminal } from "./execution-row.js";

// Request validation of WorkflowStateService (see src/validation/checks.ts).

const MAX_STEPS = 1_000;
const MAX_STEP_ENTRIES = 10_000;
const MAX_LABELS = 64;
/** Most entries of a `statuses` filter (there are six statuses; duplicates are ignored). */
export const MAX_STATUS_FILTERS = 10;

/** Validates a SaveWorkflowExecutionRequest and returns its execution. */
export function validateSave(req: SaveWorkflowExecutionRequest): WorkflowExecution {
  const e = req.execution;
  if (e === undefined) throw invalidArgument([{ field: "execution", description: "is required" }]);
  const v = new Violations();
  v.string("execution.execution_id", e.executionId, 1, MAX_ID);
  v.string("execution.workflow_name", e.workflowName, 1, MAX_NAME);
  v.enumValue("execution.status", e.status, WorkflowStatus);
  v.string("execution.error_message", e.errorMessage, 0, MAX_ERROR_MESSAGE);
  v.string("execution.initiated_by", e.initiatedBy, 0, MAX_NAME);
  v.timestamp("execution.started_at", e.startedAt);
  v.timestamp("execution.completed_at", e.completedAt);
  if (e.completedAt !== undefined && !isTerminal(e.status) && e.status !== WorkflowStatus.UNSPECIFIED) {
    v.add("execution.completed_at", "must be unset while the status is PENDING, RUNNING or BLOCKED");
  }
  v.structTree("execution.context", e.context);

  const d = e.definition;
  if (d !== undefined) {
    v.string("execution.definition.name", d.name, 0, MAX_NAME);
    v.string("execution.definition.version", d.version, 0, 50);
    const stepIds = new Set<string>();
    v.each("execution.definition.steps", d.steps, MAX_STEPS, (s, i) => {
      const f = `execution.definition.steps[${i}]`;
      v.string(`${f}.step_id`, s.stepId, 1, MAX_ID);
      if (stepIds.has(s.stepId)) v.add(`${f}.step_id`, `duplicates step ${JSON.stringify(s.stepId)}`);
      stepIds.add(s.stepId);
      v.string(`${f}.name`, s.name, 0, MAX_NAME);
      v.string(`${f}.required_capability`, s.requiredCapability, 0, MAX_NAME);
      v.string(`${f}.task_type`, s.taskType, 0, MAX_NAME);
      v.each(`${f}.depends_on`, s.dependsOn, MAX_STEPS, (dep, j) => v.string(`${f}.depends_on[${j}]`, dep, 1, MAX_ID));
      v.structTree(`${f}.parameters`, s.parameters);
      v.duration(`${f}.timeout`, s.timeout);
      const r = s.retryPolicy;
      if (r !== undefined) {
        v.intRange(`${f}.retry_policy.max_attempts`, r.maxAttempts, 0, MAX_COUNT_FIELD);
        v.duration(`${f}.retry_policy.initial_backoff`, r.initialBackoff);
        v.duration(`${f}.retry_policy.max_backoff`, r.maxBackoff);
        if (!Number.isFinite(r.backoffMultiplier) || (r.backoffMultiplier !== 0 && r.backoffMultiplier < 1)) {
          v.add(`${f}.retry_policy.backoff_multiplier`, "must be 0 or a finite number of at least 1");
        }
      }
    });
  }

  v.each("execution.step_executions", e.stepExecutions, MAX_STEP_ENTRIES, (s, i) => {
    const f = `execution.step_executions[${i}]`;
    v.string(`${f}.step_id`, s.stepId, 1, MAX_ID);
    v.enumValue(`${f}.status`, s.status, WorkflowStatus);
    v.string(`${f}.agent_key`, s.agentKey, 0, MAX_NAME);
    v.intRange(`${f}.attempt`, s.attempt, 0, MAX_COUNT_FIELD);
    v.timestamp(`${f}.started_at`, s.startedAt);
    v.timestamp(`${f}.completed_at`, s.completedAt);
    v.string(`${f}.error_message`, s.errorMessage, 0, MAX_ERROR_MESSAGE);
  });

  v.each("execution.step_outputs", Object.keys(e.stepOutputs), MAX_STEP_ENTRIES, (stepId) => {
    const f = `execution.step_outputs[${JSON.stringify(stepId)}]`;
    v.string(`${f} key`, stepId, 1, MAX_ID);
    v.structTree(f, e.stepOutputs[stepId]);
  });

  v.each("execution.labels", Object.keys(e.labels), MAX_LABELS, (key) => {
    const f = `execution.labels[${JSON.stringify(key)}]`;
    v.string(`${f} key`, key, 1, 63);
    v.string(f, e.labels[key]!, 0, 255);
  });

  v.string("etag", req.etag, 0, MAX_ID);
  if (req.fencingToken < 0n) v.add("fencing_token", "must not be negative");
  v.throwIfAny();
  return e;
}

/** Validates a GetWorkflowExecutionRequest. */
export function validateGet(req: GetWorkflowExecutionRequest): void {
  validateFields((v) => v.string("execution_id", req.executionId, 1, MAX_ID));
}

/** Validates the filters of a ListWorkflowExecutionsRequest (page size and token are checked by pagination). */
export function validateList(req: ListWorkflowExecutionsRequest): void {
  validateFields((v) => {
    v.string("workflow_name", req.workflowName, 0, MAX_NAME);
    v.each("statuses", req.statuses, MAX_STATUS_FILTERS, (s, i) => v.enumValue(`statuses[${i}]`, s, WorkflowStatus));
    v.timestamp("started_after", req.startedAfter);
    v.timestamp("started_before", req.startedBefore);
    v.string("page_token", req.pageToken, 0, MAX_PAGE_TOKEN);
  });
}

/** Validates a StreamIncompleteWorkflowsRequest. */
export function validateStream(req: StreamIncompleteWorkflowsRequest): void {
  validateFields((v) => v.string("workflow_name", req.workflowName, 0, MAX_NAME));
}

/** Validates a DeleteWorkflowExecutionsRequest. */
export function validateDelete(req: DeleteWorkflowExecutionsRequest): void {
  validateFields((v) => {
    if (req.completedBefore === undefined) v.add("completed_before", "is required");
    v.timestamp("completed_before", req.completedBefore);
    v.string("workflow_name", req.workflowName, 0, MAX_NAME);
    v.each("statuses", req.statuses, MAX_STATUS_FILTERS, (s, i) => {
      v.enumValue(`statuses[${i}]`, s, WorkflowStatus);
      if (WorkflowStatus[s] !== undefined && s !== WorkflowStatus.UNSPECIFIED && !isTerminal(s)) {
        v.add(`statuses[${i}]`, "must be COMPLETED, FAILED or CANCELLED: incomplete executions are never deleted");
      }
    });
  });
}

/** Shortest and longest lease a claim or renewal may ask for, in milliseconds. */
export const MIN_LEASE_MS = 5_000;
export const MAX_LEASE_MS = 3_600_000;
/** Most leases one RenewLeases or ReleaseLeases names. */
export const MAX_LEASES = 1_000;

/** Validates a ClaimIncompleteWorkflowsRequest and returns its lease lifetime in milliseconds. */
export function validateClaim(req: ClaimIncompleteWorkflowsRequest): number {
  const v = new Violations();
  v.string("owner", req.owner, 1, MAX_NAME);
  const leaseMs = leaseDuration(v, req.leaseDuration);
  v.string("workflow_name", req.workflowName, 0, MAX_NAME);
  if (req.maxCount < 0) v.add("max_count", "must not be negative");
  v.throwIfAny();
  return leaseMs;
}

/** Validates a RenewLeasesRequest and returns its lease lifetime in milliseconds. */
export function validateRenew(req: RenewLeasesRequest): number {
  const v = new Violations();
  heldLeases(v, req.leases);
  const leaseMs = leaseDuration(v, req.leaseDuration);
  v.throwIfAny();
  return leaseMs;
}

/** Validates a ReleaseLeasesRequest. */
export function validateRelease(req: ReleaseLeasesRequest): void {
  validateFields((v) => heldLeases(v, req.leases));
}

/** 1 to MAX_LEASES leases, each of an execution named once, with a token. */
function heldLeases(v: Violations, leases: readonly HeldLease[]): void {
  if (leases.length === 0) v.add("leases", "must name at least one lease");
  const seen = new Set<string>();
  v.each("leases", leases, MAX_LEASES, (lease, i) => {
    v.string(`leases[${i}].execution_id`, lease.executionId, 1, MAX_ID);
    if (seen.has(lease.executionId)) v.add(`leases[${i}].execution_id`, `names execution ${JSON.stringify(lease.executionId)} twice`);
    seen.add(lease.executionId);
    if (lease.fencingToken <= 0n) v.add(`leases[${i}].fencing_token`, "is required (a lease's positive fencing token)");
  });
}

/** A `lease_duration` within MIN_LEASE_MS..MAX_LEASE_MS, in whole milliseconds (sub-millisecond parts are dropped). */
function leaseDuration(v: Violations, d: Duration | undefined): number {
  if (d === undefined) {
    v.add("lease_duration", "is required");
    return 0;
  }
  const ms = Number(d.seconds) * 1000 + Math.floor(d.nanos / 1_000_000);
  if (d.nanos < 0 || d.nanos > 999_999_999 || ms < MIN_LEASE_MS || ms > MAX_LEASE_MS) {
    v.add("lease_duration", "must be from 5 seconds to 1 hour");
  }
  return ms;
}
