import type { Duration } from "@bufbuild/protobuf/wkt";
import type {
  GetAgentStatisticsRequest,
  ListAgentStatisticsRequest,
  ListTopPerformingAgentsRequest,
  ListUnderperformingAgentsRequest,
  RecalculateStatisticsRequest,
  RecordTaskOutcomeRequest,
} from "../../../gen/orchestration/state/v1/statistics_service_pb.js";
import { Violations } from "../../validation/checks.js";

// Request validation of StatisticsService, field by field, with the limits the
// contract documents. Each function throws one INVALID_ARGUMENT naming every
// bad field.

const MAX_KEY = 200;
// Task and routing durations are capped so that an agent's summed durations
// (int8 microseconds, about 292,000 years) cannot overflow for the next
// hundreds of thousands of maximal tasks.
const MAX_DURATION_SECONDS = 365n * 24n * 3600n;
// minimum_tasks is compared with int8 counters; 2^53 keeps it exact everywhere.
const MAX_MINIMUM_TASKS = 2n ** 53n;

/** A non-negative duration of at most 365 days (unset is 0). */
export function boundedDuration(v: Violations, field: string, d: Duration | undefined): void {
  const before = v.list.length;
  v.duration(field, d);
  if (v.list.length > before || d === undefined) return;
  if (d.seconds > MAX_DURATION_SECONDS || (d.seconds === MAX_DURATION_SECONDS && d.nanos > 0)) {
    v.add(field, "must be at most 365 days");
  }
}

function minimumTasks(v: Violations, value: bigint): void {
  if (value < 0n || value > MAX_MINIMUM_TASKS) v.add("minimum_tasks", `must be from 0 to ${MAX_MINIMUM_TASKS}, got ${value}`);
}

/** Validates a RecordTaskOutcomeRequest. */
export function validateRecordOutcome(req: RecordTaskOutcomeRequest): void {
  const v = new Violations();
  v.string("agent_key", req.agentKey, 1, MAX_KEY);
  boundedDuration(v, "duration", req.duration);
  v.string("request_id", req.requestId, 0, MAX_KEY);
  v.throwIfAny();
}

/** Validates a GetAgentStatisticsRequest. */
export function validateGet(req: GetAgentStatisticsRequest): void {
  const v = new Violations();
  v.string("agent_key", req.agentKey, 1, MAX_KEY);
  v.throwIfAny();
}

/** Validates a ListAgentStatisticsRequest's token (page size is checked by pagination). */
export function validateList(req: ListAgentStatisticsRequest): void {
  const v = new Violations();
  v.string("page_token", req.pageToken, 0, 1_000);
  v.throwIfAny();
}

/** Validates a ListTopPerformingAgentsRequest. */
export function validateTop(req: ListTopPerformingAgentsRequest): void {
  const v = new Violations();
  v.intRange("limit", req.limit, 0, 1_000);
  minimumTasks(v, req.minimumTasks);
  v.throwIfAny();
}

/** Validates a ListUnderperformingAgentsRequest. */
export function validateUnderperforming(req: ListUnderperformingAgentsRequest): void {
  const v = new Violations();
  const t = req.successRateThreshold;
  if (!(t > 0 && t <= 1)) {
    v.add("success_rate_threshold", t === 0 ? "is required (greater than 0, at most 1)" : `must be greater than 0 and at most 1, got ${t}`);
  }
  minimumTasks(v, req.minimumTasks);
  v.intRange("limit", req.limit, 0, 1_000);
  v.throwIfAny();
}

/** Validates a RecalculateStatisticsRequest. */
export function validateRecalculate(req: RecalculateStatisticsRequest): void {
  const v = new Violations();
  v.timestamp("since", req.since);
  v.throwIfAny();
}
