import { tenantTable } from "./tenant-table.js";
import type { RowOf } from "./plain-rows.js";

/**
 * One row of `agent_statistics`: the outcome counters of one agent of one
 * tenant. Rates and averages are derived from the counters when read, so they
 * can never disagree with them. int8 and timestamp columns are read as text.
 */
export class AgentStatisticsModel extends tenantTable("agent_statistics", "agent_key") {
  agent_key!: string;
  total_tasks!: string;
  successful_tasks!: string;
  failed_tasks!: string;
  /** Sum of the task durations, in microseconds. */
  total_duration_us!: string;
  last_task_time!: string | null;
  /** Bumped on every change. */
  version!: string;
  update_time!: string;
}

/** One row of `agent_statistics` as a plain object (see ./plain-rows.ts); model instances are rows too. */
export type StatisticsRow = RowOf<AgentStatisticsModel>;
