import { create } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import {
  type CircuitBreaker,
  type CircuitBreakerPolicy,
  CircuitBreakerSchema,
  type CircuitBreakerTransition,
  CircuitBreakerTransitionSchema,
  CircuitState,
  TransitionReason,
} from "../../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { int8FromDb, optionalTimestampFromDb, timestampFromDb, timestampToDb } from "../../db/convert.js";
import type { BreakerRow } from "../../db/models/circuit-breaker.js";
import type { TransitionRow } from "../../db/models/circuit-breaker-transition.js";
import type { BreakerColumns, TransitionColumns } from "../../db/queries/circuit-breakers.js";
import { etagOf } from "../../etags/etag.js";
import { DEFAULT_POLICY, effectivePolicy, effectivePolicyMessage, policyFromDb, policyToDb } from "./policy.js";
import type { BreakerFields, StateName, TransitionFacts } from "./state-machine.js";

// The one place where CircuitBreaker and CircuitBreakerTransition messages, the
// state machine's fields and the rows of circuit_breakers and
// circuit_breaker_transitions are converted into each other.

/** The state column's value ("OPEN") of a CircuitState. */
export function stateToDb(state: CircuitState): StateName {
  return CircuitState[state] as StateName;
}

function stateFromDb(state: string): CircuitState {
  return CircuitState[state as keyof typeof CircuitState];
}

/** Microseconds since the Unix epoch of a timestamptz's text form. */
export function microsFromDb(text: string): number {
  return timestampToMicros(timestampFromDb(text));
}

/** Microseconds since the Unix epoch of a Timestamp (sub-microsecond nanos truncated). */
export function timestampToMicros(ts: Timestamp): number {
  return Number(ts.seconds) * 1_000_000 + Math.floor(ts.nanos / 1000);
}

/** The Timestamp of microseconds since the Unix epoch. */
export function microsToTimestamp(us: number): Timestamp {
  const seconds = Math.floor(us / 1_000_000);
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos: (us - seconds * 1_000_000) * 1000 });
}

function microsToDb(us: number | null): string | null {
  return us === null ? null : timestampToDb(microsToTimestamp(us));
}

/** The state machine's view of a stored breaker. */
export function fieldsFromRow(row: BreakerRow): BreakerFields {
  return {
    state: row.state as StateName,
    failureCount: int8FromDb(row.failure_count),
    successCount: int8FromDb(row.success_count),
    consecutiveFailures: int8FromDb(row.consecutive_failures),
    recentOutcomes: row.recent_outcomes,
    trialCallsGranted: row.trial_calls_granted,
    trialPermits: row.trial_permits.map((p) => ({ id: p.id, expiresAtUs: p.expires_us })),
    openedAtUs: row.opened_at === null ? null : microsFromDb(row.opened_at),
    resetAtUs: row.reset_at === null ? null : microsFromDb(row.reset_at),
  };
}

/** The columns to write for the state machine's fields, and the policy overrides when they change. */
export function breakerColumns(f: BreakerFields, policy?: CircuitBreakerPolicy): BreakerColumns {
  return {
    state: f.state,
    failure_count: String(f.failureCount),
    success_count: String(f.successCount),
    consecutive_failures: String(f.consecutiveFailures),
    recent_outcomes: f.recentOutcomes,
    trial_calls_granted: f.trialCallsGranted,
    trial_permits: f.trialPermits.map((p) => ({ id: p.id, expires_us: p.expiresAtUs })),
    opened_at: microsToDb(f.openedAtUs),
    reset_at: microsToDb(f.resetAtUs),
    ...(policy === undefined ? {} : { policy: policyToDb(policy) }),
  };
}

/** The columns of a transition record. */
export function transitionColumns(t: TransitionFacts): TransitionColumns {
  return {
    from_state: t.from,
    to_state: t.to,
    reason: t.reason,
    failure_count: String(t.failureCount),
    success_count: String(t.successCount),
    consecutive_failures: String(t.consecutiveFailures),
    window_calls: t.windowCalls,
    window_failures: t.windowFailures,
  };
}

/** The CircuitBreaker message of a stored row, with its policy in force, etag and server times. */
export function breakerFromRow(row: BreakerRow): CircuitBreaker {
  const policy = policyFromDb(row.policy);
  return create(CircuitBreakerSchema, {
    agentKey: row.agent_key,
    state: stateFromDb(row.state),
    failureCount: BigInt(row.failure_count),
    successCount: BigInt(row.success_count),
    openedAt: optionalTimestampFromDb(row.opened_at),
    resetAt: optionalTimestampFromDb(row.reset_at),
    etag: etagOf(row.version),
    createTime: timestampFromDb(row.create_time),
    updateTime: timestampFromDb(row.update_time),
    consecutiveFailures: BigInt(row.consecutive_failures),
    trialCallsGranted: row.trial_calls_granted,
    policy,
    effectivePolicy: effectivePolicyMessage(effectivePolicy(policy)),
  });
}

/** What AcquirePermission reports for an agent without a stored breaker: CLOSED, default policy. */
export function unstoredBreaker(agentKey: string): CircuitBreaker {
  return create(CircuitBreakerSchema, {
    agentKey,
    state: CircuitState.CLOSED,
    policy: {},
    effectivePolicy: effectivePolicyMessage(DEFAULT_POLICY),
  });
}

/**
 * The transition as stored, or as notified to watchers: the notification's
 * JSON payload (see the migration's trigger) has the row's column names and
 * text forms.
 */
export type TransitionRecord = Pick<
  TransitionRow,
  | "agent_key"
  | "transition_id"
  | "from_state"
  | "to_state"
  | "reason"
  | "failure_count"
  | "success_count"
  | "consecutive_failures"
  | "window_calls"
  | "window_failures"
  | "transition_time"
>;

/** The CircuitBreakerTransition message of a stored or notified transition. */
export function transitionFromRow(row: TransitionRecord): CircuitBreakerTransition {
  return create(CircuitBreakerTransitionSchema, {
    transitionId: BigInt(row.transition_id),
    agentKey: row.agent_key,
    fromState: stateFromDb(row.from_state),
    toState: stateFromDb(row.to_state),
    reason: TransitionReason[row.reason as keyof typeof TransitionReason],
    failureCount: BigInt(row.failure_count),
    successCount: BigInt(row.success_count),
    consecutiveFailures: BigInt(row.consecutive_failures),
    windowCalls: row.window_calls,
    windowFailures: row.window_failures,
    transitionTime: timestampFromDb(row.transition_time),
  });
}
