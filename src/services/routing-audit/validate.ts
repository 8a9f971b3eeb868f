import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import type {
  DeleteRoutingDecisionsRequest,
  ListRoutingDecisionsRequest,
  RecordRoutingDecisionRequest,
  RecordRoutingDecisionsRequest,
  RoutingDecision,
  SummarizeAgentDecisionsRequest,
  SummarizeDecisionsOverTimeRequest,
} from "../../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { invalidArgument } from "../../errors/invalid-argument.js";
import { UUID } from "../../ranges.js";
import { validateFields, Violations } from "../../validation/checks.js";
import { MAX_COUNT_FIELD, MAX_ERROR_MESSAGE, MAX_ID, MAX_NAME, MAX_PAGE_TOKEN } from "../../validation/field-limits.js";

// Request validation of RoutingAuditService (see src/validation/checks.ts).

const MAX_CANDIDATES = 1_000;
/** Most decisions per RecordRoutingDecisions call. */
export const MAX_BATCH = 1_000;
/** A decision id: a UUID (also the shape of a page token's id key). */
export const DECISION_ID = UUID;

/** Checks one decision, naming its fields under `prefix` (`decision`, `decisions[3]`). */
function checkDecision(v: Violations, prefix: string, d: RoutingDecision): void {
  if (d.decisionId !== "" && !DECISION_ID.test(d.decisionId)) {
    v.add(`${prefix}.decision_id`, "must be empty (the server assigns one) or a UUID");
  }
  v.string(`${prefix}.task_id`, d.taskId, 1, MAX_NAME);
  v.string(`${prefix}.task_type`, d.taskType, 0, MAX_NAME);
  v.string(`${prefix}.required_capability`, d.requiredCapability, 0, MAX_NAME);
  v.string(`${prefix}.selected_agent`, d.selectedAgent, 1, MAX_NAME);
  v.finite(`${prefix}.agent_score`, d.agentScore);
  v.each(`${prefix}.candidates`, d.candidates, MAX_CANDIDATES, (c, i) => {
    v.string(`${prefix}.candidates[${i}].agent_key`, c.agentKey, 1, MAX_NAME);
    v.finite(`${prefix}.candidates[${i}].score`, c.score);
  });
  v.string(`${prefix}.error_message`, d.errorMessage, 0, MAX_ERROR_MESSAGE);
  v.intRange(`${prefix}.retry_attempts`, d.retryAttempts, 0, MAX_COUNT_FIELD);
  v.taskDuration(`${prefix}.routing_duration`, d.routingDuration);
  v.taskDuration(`${prefix}.task_duration`, d.taskDuration);
  if (d.routedAt === undefined) v.add(`${prefix}.routed_at`, "is required");
  v.timestamp(`${prefix}.routed_at`, d.routedAt);
  v.string(`${prefix}.workflow_execution_id`, d.workflowExecutionId, 0, MAX_ID);
  v.string(`${prefix}.step_id`, d.stepId, 0, MAX_ID);
}

/** Validates a RecordRoutingDecisionRequest and returns its decision. */
export function validateRecord(req: RecordRoutingDecisionRequest): RoutingDecision {
  if (req.decision === undefined) throw invalidArgument([{ field: "decision", description: "is required" }]);
  const v = new Violations();
  checkDecision(v, "decision", req.decision);
  v.throwIfAny();
  return req.decision;
}

/** Validates a RecordRoutingDecisionsRequest: 1-1,000 valid decisions with distinct ids. */
export function validateRecordBatch(req: RecordRoutingDecisionsRequest): RoutingDecision[] {
  const v = new Violations();
  if (req.decisions.length === 0 || req.decisions.length > MAX_BATCH) {
    throw invalidArgument([{ field: "decisions", description: `must have 1-${MAX_BATCH} entries, got ${req.decisions.length}` }]);
  }
  const firstIndexOf = new Map<string, number>();
  v.each("decisions", req.decisions, MAX_BATCH, (d, i) => {
    checkDecision(v, `decisions[${i}]`, d);
    if (d.decisionId === "") return;
    const id = d.decisionId.toLowerCase();
    const first = firstIndexOf.get(id);
    if (first !== undefined) v.add(`decisions[${i}].decision_id`, `duplicates decisions[${first}].decision_id`);
    else firstIndexOf.set(id, i);
  });
  v.throwIfAny();
  return req.decisions;
}

/** Validates the filters of a ListRoutingDecisionsRequest (page size and token are checked by pagination). */
export function validateList(req: ListRoutingDecisionsRequest): void {
  validateFields((v) => {
    v.string("task_id", req.taskId, 0, MAX_NAME);
    v.string("task_type", req.taskType, 0, MAX_NAME);
    v.string("selected_agent", req.selectedAgent, 0, MAX_NAME);
    v.string("workflow_execution_id", req.workflowExecutionId, 0, MAX_ID);
    v.string("step_id", req.stepId, 0, MAX_ID);
    routedRange(v, req);
    v.string("page_token", req.pageToken, 0, MAX_PAGE_TOKEN);
  });
}

/** Validates a SummarizeAgentDecisionsRequest. */
export function validateSummarize(req: SummarizeAgentDecisionsRequest): void {
  validateFields((v) => {
    routedRange(v, req);
    v.string("page_token", req.pageToken, 0, MAX_PAGE_TOKEN);
  });
}

/** The optional `routed_after` and `routed_before` of a filter. */
function routedRange(v: Violations, req: { routedAfter?: Timestamp; routedBefore?: Timestamp }): void {
  v.timestamp("routed_after", req.routedAfter);
  v.timestamp("routed_before", req.routedBefore);
}

/** Most buckets one SummarizeDecisionsOverTime call may ask for. */
export const MAX_BUCKETS = 1_000;
const MIN_BUCKET_US = 1_000_000n;
const MAX_BUCKET_US = 366n * 24n * 3600n * 1_000_000n;

/** The validated range and buckets of a SummarizeDecisionsOverTimeRequest, in whole microseconds since the epoch. */
export interface BucketedRange {
  afterUs: bigint;
  beforeUs: bigint;
  widthUs: bigint;
}

/**
 * Validates a SummarizeDecisionsOverTimeRequest: a range, a bucket width from
 * 1 second to 366 days, at most MAX_BUCKETS buckets (checked before any work
 * starts), and the filters. Times are truncated to the microsecond, as stored.
 */
export function validateSummarizeOverTime(req: SummarizeDecisionsOverTimeRequest): BucketedRange {
  const v = new Violations();
  if (req.routedAfter === undefined) v.add("routed_after", "is required");
  if (req.routedBefore === undefined) v.add("routed_before", "is required");
  if (req.bucketWidth === undefined) v.add("bucket_width", "is required");
  routedRange(v, req);
  v.duration("bucket_width", req.bucketWidth);
  v.string("selected_agent", req.selectedAgent, 0, MAX_NAME);
  v.string("task_type", req.taskType, 0, MAX_NAME);
  v.throwIfAny();
  const afterUs = timestampMicros(req.routedAfter!);
  const beforeUs = timestampMicros(req.routedBefore!);
  const widthUs = durationMicros(req.bucketWidth!);
  if (beforeUs <= afterUs) v.add("routed_before", "must be after routed_after");
  if (widthUs < MIN_BUCKET_US || widthUs > MAX_BUCKET_US) v.add("bucket_width", "must be from 1 second to 366 days");
  else if (beforeUs > afterUs && (beforeUs - afterUs + widthUs - 1n) / widthUs > BigInt(MAX_BUCKETS)) {
    v.add("bucket_width", `makes more than ${MAX_BUCKETS} buckets of the range; widen the buckets or narrow the range`);
  }
  v.throwIfAny();
  return { afterUs, beforeUs, widthUs };
}

function timestampMicros(ts: Timestamp): bigint {
  return ts.seconds * 1_000_000n + BigInt(Math.floor(ts.nanos / 1000));
}

function durationMicros(d: Duration): bigint {
  return d.seconds * 1_000_000n + BigInt(Math.floor(d.nanos / 1000));
}

/** Validates a DeleteRoutingDecisionsRequest. */
export function validateDelete(req: DeleteRoutingDecisionsRequest): void {
  validateFields((v) => {
    if (req.routedBefore === undefined) v.add("routed_before", "is required");
    v.timestamp("routed_before", req.routedBefore);
  });
}
