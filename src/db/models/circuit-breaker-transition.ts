import { tenantTable } from "./tenant-table.js";
import type { RowOf } from "./plain-rows.js";

/**
 * One row of `circuit_breaker_transitions`: an append-only record of one
 * state change of one agent's breaker. Timestamps and int8 columns are read as
 * text (see ../database.ts).
 */
export class CircuitBreakerTransitionModel extends tenantTable("circuit_breaker_transitions", "agent_key", "transition_id") {
  agent_key!: string;
  transition_id!: string;
  from_state!: string;
  to_state!: string;
  /** TransitionReason name without its prefix, e.g. "CONSECUTIVE_FAILURES". */
  reason!: string;
  failure_count!: string;
  success_count!: string;
  consecutive_failures!: string;
  window_calls!: number;
  window_failures!: number;
  transition_time!: string;
}

/** One row of `circuit_breaker_transitions` as a plain object (see ./plain-rows.ts); model instances are rows too. */
export type TransitionRow = RowOf<CircuitBreakerTransitionModel>;
