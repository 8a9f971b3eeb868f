import { tenantTable } from "./tenant-table.js";
import type { RowOf } from "./plain-rows.js";

/**
 * One row of `circuit_breakers`: the breaker of one agent of one tenant, with
 * the state machine's bookkeeping and the agent's policy overrides.
 * Timestamps and int8 columns are read as text (see ../database.ts).
 */
export class CircuitBreakerModel extends tenantTable("circuit_breakers", "agent_key") {
  static override jsonAttributes = ["policy", "trial_permits"];

  agent_key!: string;
  /** CircuitState name without its prefix, e.g. "OPEN". */
  state!: string;
  failure_count!: string;
  success_count!: string;
  consecutive_failures!: string;
  /** Outcomes of the most recent calls in CLOSED, oldest first: '0' success, '1' failure. */
  recent_outcomes!: string;
  trial_calls_granted!: number;
  /** Live HALF_OPEN trial permits, oldest first (see the migration 20261204020100_breaker_trial_permits). */
  trial_permits!: { id: string; expires_us: number }[];
  opened_at!: string | null;
  reset_at!: string | null;
  /** CircuitBreakerPolicy overrides as protobuf JSON (proto field names); {} = all defaults. */
  policy!: Record<string, unknown>;
  /** Bumped on every write; exposed as the etag. */
  version!: string;
  create_time!: string;
  update_time!: string;
}

/** One row of `circuit_breakers` as a plain object (see ./plain-rows.ts); model instances are rows too. */
export type BreakerRow = RowOf<CircuitBreakerModel>;
