import { create } from "@bufbuild/protobuf";
import {
  type AgentStatistics,
  AgentStatisticsSchema,
} from "../../../gen/orchestration/state/v1/statistics_service_pb.js";
import { durationFromMicros, optionalTimestampFromDb, outcomeCounts, timestampFromDb } from "../../db/convert.js";
import type { StatisticsRow } from "../../db/models/agent-statistics.js";

// The one place where agent_statistics rows become AgentStatistics messages.
// Rates and averages are derived here from the stored counters, so they always
// agree with them.

/** The AgentStatistics message of a stored row. */
export function statisticsFromRow(row: StatisticsRow): AgentStatistics {
  const { total, successful, failed, successRate } = outcomeCounts(row.total_tasks, row.successful_tasks, row.failed_tasks);
  const durationUs = BigInt(row.total_duration_us);
  return create(AgentStatisticsSchema, {
    agentKey: row.agent_key,
    totalTasks: total,
    successfulTasks: successful,
    failedTasks: failed,
    successRate,
    // Exact integer rounding, halves up: floor((2 * sum + n) / 2n).
    averageDuration: durationFromMicros(total === 0n ? 0n : (2n * durationUs + total) / (2n * total)),
    lastTaskTime: optionalTimestampFromDb(row.last_task_time),
    updateTime: timestampFromDb(row.update_time),
  });
}
