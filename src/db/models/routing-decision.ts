import { tenantTable } from "./tenant-table.js";
import type { RowOf } from "./plain-rows.js";

/**
 * One row of `routing_decisions`: a routing decision of one tenant, appended
 * once and never updated. Durations are whole microseconds; timestamps and int8
 * columns are read as text (see ../database.ts).
 */
export class RoutingDecisionModel extends tenantTable("routing_decisions", "decision_id") {
  static override jsonAttributes = ["candidates"];

  /** A lowercase UUID. */
  decision_id!: string;
  task_id!: string;
  task_type!: string;
  required_capability!: string;
  selected_agent!: string;
  priority!: number;
  agent_score!: number;
  /** CandidateAgent messages as protobuf JSON with proto field names. */
  candidates!: { agent_key: string; score: number }[];
  success!: boolean;
  error_message!: string;
  retry_attempts!: number;
  routing_duration_us!: string;
  task_duration_us!: string;
  routed_at!: string;
  workflow_execution_id!: string;
  step_id!: string;
  /** SHA-256 of the content (everything but decision_id and create_time); see decision-row.ts. */
  content_hash!: string;
  create_time!: string;
  /** What the row weighs against the byte budget of a page (generated; see migration 20261204030000). */
  stored_bytes!: string;
}

/** One row of `routing_decisions` as a plain object (see ./plain-rows.ts); model instances are rows too. */
export type DecisionRow = RowOf<RoutingDecisionModel>;
