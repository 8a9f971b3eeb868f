import { hash, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import {
  type AgentDecisionSummary,
  AgentDecisionSummarySchema,
  type DecisionTimeBucket,
  DecisionTimeBucketSchema,
  type RoutingDecision,
  RoutingDecisionSchema,
} from "../../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { durationFromMicros, durationToMicros, outcomeCounts, timestampFromDb, timestampToDb } from "../../db/convert.js";
import type { DecisionRow } from "../../db/models/routing-decision.js";
import type { DecisionColumns, SummaryRow, TimeBucketRow } from "../../db/queries/routing-decisions.js";
import type { BucketedRange } from "./validate.js";

// The one place where RoutingDecision messages and routing_decisions rows (and
// summary rows) are converted into each other.

/**
 * The columns a recording writes, from a validated decision: the id in lower
 * case (a random one when empty), times and durations in their stored
 * precision (microseconds), and the hash of that stored content.
 */
export function decisionToColumns(d: RoutingDecision): DecisionColumns {
  const content = {
    task_id: d.taskId,
    task_type: d.taskType,
    required_capability: d.requiredCapability,
    selected_agent: d.selectedAgent,
    priority: d.priority,
    agent_score: d.agentScore,
    candidates: d.candidates.map((c) => ({ agent_key: c.agentKey, score: c.score })),
    success: d.success,
    error_message: d.errorMessage,
    retry_attempts: d.retryAttempts,
    routing_duration_us: durationToMicros(d.routingDuration),
    task_duration_us: durationToMicros(d.taskDuration),
    routed_at: timestampToDb(d.routedAt!),
    workflow_execution_id: d.workflowExecutionId,
    step_id: d.stepId,
  };
  return {
    decision_id: d.decisionId === "" ? randomUUID() : d.decisionId.toLowerCase(),
    ...content,
    content_hash: contentHash(content),
  };
}

// A retry must hash to the same value as the original: the content object is
// built with a fixed key order from values already truncated to what is stored,
// so two decisions that would be stored identically hash identically. The
// digest is stored, so it must never change (test/routing-audit/content-hash.test.ts).
// The one-shot `hash`: 0.9 µs per decision against createHash's 2.0-2.3 (one
// per decision of a RecordRoutingDecisions call of 500), the same digest.
function contentHash(content: Omit<DecisionColumns, "decision_id" | "content_hash">): string {
  return hash("sha256", JSON.stringify(content), "hex");
}

/** The RoutingDecision message of a stored row. */
export function decisionFromRow(row: DecisionRow): RoutingDecision {
  return create(RoutingDecisionSchema, {
    decisionId: row.decision_id,
    taskId: row.task_id,
    taskType: row.task_type,
    requiredCapability: row.required_capability,
    selectedAgent: row.selected_agent,
    priority: row.priority,
    agentScore: row.agent_score,
    candidates: row.candidates.map((c) => ({ agentKey: c.agent_key, score: c.score })),
    success: row.success,
    errorMessage: row.error_message,
    retryAttempts: row.retry_attempts,
    routingDuration: durationFromMicros(row.routing_duration_us),
    taskDuration: durationFromMicros(row.task_duration_us),
    routedAt: timestampFromDb(row.routed_at),
    workflowExecutionId: row.workflow_execution_id,
    stepId: row.step_id,
    createTime: timestampFromDb(row.create_time),
  });
}

/** The AgentDecisionSummary of one summary row. */
export function summaryFromRow(row: SummaryRow): AgentDecisionSummary {
  return create(AgentDecisionSummarySchema, {
    agentKey: row.agent_key,
    ...decisionCounts(row),
    averageRoutingDuration: durationFromMicros(row.average_us),
    p50RoutingDuration: durationFromMicros(row.p50_us),
    p95RoutingDuration: durationFromMicros(row.p95_us),
  });
}

/** The DecisionTimeBucket of one bucket row: its index placed on the request's range. */
export function timeBucketFromRow(row: TimeBucketRow, range: BucketedRange): DecisionTimeBucket {
  const startUs = range.afterUs + BigInt(row.bucket) * range.widthUs;
  const endUs = startUs + range.widthUs < range.beforeUs ? startUs + range.widthUs : range.beforeUs;
  return create(DecisionTimeBucketSchema, {
    startTime: timestampFromMicros(startUs),
    endTime: timestampFromMicros(endUs),
    ...decisionCounts(row),
    averageTaskDuration: durationFromMicros(row.average_task_us),
  });
}

/** The counts both a summary and a time bucket report, from their aggregate row. */
function decisionCounts(row: SummaryRow | TimeBucketRow) {
  const counts = outcomeCounts(row.total, row.successful, row.failed);
  return {
    totalDecisions: counts.total,
    successfulDecisions: counts.successful,
    failedDecisions: counts.failed,
    successRate: counts.successRate,
  };
}

/** Microseconds since the epoch as a Timestamp (nanos never negative, also before 1970). */
function timestampFromMicros(us: bigint): Timestamp {
  const seconds = us >= 0n ? us / 1_000_000n : -((-us + 999_999n) / 1_000_000n);
  return create(TimestampSchema, { seconds, nanos: Number(us - seconds * 1_000_000n) * 1000 });
}
