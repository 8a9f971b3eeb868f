import type {
  GetAgentStatisticsRequest,
  ListAgentStatisticsRequest,
  ListTopPerformingAgentsRequest,
  ListUnderperformingAgentsRequest,
  RecalculateStatisticsRequest,
  RecordTaskOutcomeRequest,
} from "../../../gen/orchestration/state/v1/statistics_service_pb.js";
import { validateFields, type Violations } from "../../validation/checks.js";
import { MAX_COUNT_FIELD, MAX_NAME, MAX_PAGE_TOKEN } from "../../validation/field-limits.js";

// Request validation of StatisticsService (see src/validation/checks.ts).

// minimum_tasks is compared with int8 counters; 2^53 keeps it exact everywhere.
const MAX_MINIMUM_TASKS = 2n ** 53n;

function minimumTasks(v: Violations, value: bigint): void {
  if (value < 0n || value > MAX_MINIMUM_TASKS) v.add("minimum_tasks", `must be from 0 to ${MAX_MINIMUM_TASKS}, got ${value}`);
}

/** Validates a RecordTaskOutcomeRequest. */
export function validateRecordOutcome(req: RecordTaskOutcomeRequest): void {
  validateFields((v) => {
    v.string("agent_key", req.agentKey, 1, MAX_NAME);
    v.taskDuration("duration", req.duration);
    v.string("request_id", req.requestId, 0, MAX_NAME);
  });
}

/** Validates a GetAgentStatisticsRequest. */
export function validateGet(req: GetAgentStatisticsRequest): void {
  validateFields((v) => v.string("agent_key", req.agentKey, 1, MAX_NAME));
}

/** Validates a ListAgentStatisticsRequest's token (page size is checked by pagination). */
export function validateList(req: ListAgentStatisticsRequest): void {
  validateFields((v) => v.string("page_token", req.pageToken, 0, MAX_PAGE_TOKEN));
}

/** Validates a ListTopPerformingAgentsRequest. */
export function validateTop(req: ListTopPerformingAgentsRequest): void {
  validateFields((v) => {
    v.intRange("limit", req.limit, 0, MAX_COUNT_FIELD);
    minimumTasks(v, req.minimumTasks);
  });
}

/** Validates a ListUnderperformingAgentsRequest. */
export function validateUnderperforming(req: ListUnderperformingAgentsRequest): void {
  validateFields((v) => {
    const t = req.successRateThreshold;
    if (!(t > 0 && t <= 1)) {
      v.add("success_rate_threshold", t === 0 ? "is required (greater than 0, at most 1)" : `must be greater than 0 and at most 1, got ${t}`);
    }
    minimumTasks(v, req.minimumTasks);
    v.intRange("limit", req.limit, 0, MAX_COUNT_FIELD);
  });
}

/** Validates a RecalculateStatisticsRequest. */
export function validateRecalculate(req: RecalculateStatisticsRequest): void {
  validateFields((v) => v.timestamp("since", req.since));
}
