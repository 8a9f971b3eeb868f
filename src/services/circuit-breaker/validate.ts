import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import {
  type CircuitBreaker,
  type CircuitBreakerPolicy,
  CircuitState,
  type DeleteCircuitBreakerStatesRequest,
  FailureThresholdType,
  type ListCircuitBreakerStatesRequest,
  type ListCircuitBreakerTransitionsRequest,
  type RecordCallOutcomeRequest,
  type SaveCircuitBreakerStateRequest,
  type WatchCircuitBreakersRequest,
} from "../../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { durationToMicros } from "../../db/convert.js";
import { invalidArgument } from "../../errors/invalid-argument.js";
import { validateFields, Violations } from "../../validation/checks.js";
import { MAX_ID, MAX_NAME, MAX_PAGE_TOKEN } from "../../validation/field-limits.js";
import { effectivePolicy, POLICY_LIMITS } from "./policy.js";
import { timestampToMicros } from "./breaker-row.js";

// Request validation of CircuitBreakerService (see src/validation/checks.ts).

const MAX_WATCHED_AGENTS = 100;
/** Most entries of a `states` filter (there are five states; duplicates are ignored). */
export const MAX_STATE_FILTERS = 10;
// Counters are exposed as int64 but computed with JS numbers.
const MAX_COUNT = 2 ** 53;

/** Validates a SaveCircuitBreakerStateRequest and returns its breaker. */
export function validateSave(req: SaveCircuitBreakerStateRequest): CircuitBreaker {
  const b = req.circuitBreaker;
  if (b === undefined) throw invalidArgument([{ field: "circuit_breaker", description: "is required" }]);
  const v = new Violations();
  v.string("circuit_breaker.agent_key", b.agentKey, 1, MAX_NAME);
  v.enumValue("circuit_breaker.state", b.state, CircuitState);
  v.intRange("circuit_breaker.failure_count", b.failureCount, 0, MAX_COUNT);
  v.intRange("circuit_breaker.success_count", b.successCount, 0, MAX_COUNT);
  breakerTime(v, "circuit_breaker.opened_at", b.openedAt);
  breakerTime(v, "circuit_breaker.reset_at", b.resetAt);
  if (b.openedAt !== undefined && b.state !== CircuitState.OPEN && b.state !== CircuitState.HALF_OPEN) {
    v.add("circuit_breaker.opened_at", "must be unset unless the state is OPEN or HALF_OPEN");
  }
  if (b.resetAt !== undefined && b.state !== CircuitState.OPEN) {
    v.add("circuit_breaker.reset_at", "must be unset unless the state is OPEN");
  }
  if (b.openedAt !== undefined && b.resetAt !== undefined && timestampToMicros(b.resetAt) < timestampToMicros(b.openedAt)) {
    v.add("circuit_breaker.reset_at", "must not be before opened_at");
  }
  if (b.policy !== undefined) validatePolicy(v, "circuit_breaker.policy", b.policy);
  v.string("etag", req.etag, 0, MAX_ID);
  v.throwIfAny();
  return b;
}

// A breaker's times are microseconds in JS numbers in the state machine,
// exact up to 2^53 (in 2255): the contract allows 1970-01-01 up to, not
// including, 2200-01-01, which leaves room for `opened_at` + the longest
// `open_duration` (30 days). Larger times lost precision and then failed to
// convert back (INTERNAL); now they are refused, naming the field.
const FIRST_BREAKER_SECOND = 0n;
const END_OF_BREAKER_TIME = 7_258_118_400n; // 2200-01-01T00:00:00Z

function breakerTime(v: Violations, field: string, ts: Timestamp | undefined): void {
  const before = v.list.length;
  v.timestamp(field, ts);
  if (ts === undefined || v.list.length > before) return;
  if (ts.seconds < FIRST_BREAKER_SECOND || ts.seconds >= END_OF_BREAKER_TIME) {
    v.add(field, "must be from 1970-01-01T00:00:00Z up to, not including, 2200-01-01T00:00:00Z");
  }
}

function validatePolicy(v: Violations, prefix: string, p: CircuitBreakerPolicy): void {
  if (FailureThresholdType[p.failureThresholdType] === undefined) {
    v.add(`${prefix}.failure_threshold_type`, `unknown value ${p.failureThresholdType}`);
  }
  v.intRange(`${prefix}.consecutive_failure_threshold`, p.consecutiveFailureThreshold, 0, POLICY_LIMITS.consecutiveFailureThreshold);
  if (!Number.isFinite(p.failureRateThreshold) || p.failureRateThreshold < 0 || p.failureRateThreshold > 100) {
    v.add(`${prefix}.failure_rate_threshold`, "must be a percentage greater than 0 and at most 100 (0: the default)");
  }
  v.intRange(`${prefix}.sliding_window_size`, p.slidingWindowSize, 0, POLICY_LIMITS.slidingWindowSize);
  v.intRange(`${prefix}.minimum_calls`, p.minimumCalls, 0, POLICY_LIMITS.minimumCalls);
  v.intRange(`${prefix}.half_open_trial_calls`, p.halfOpenTrialCalls, 0, POLICY_LIMITS.halfOpenTrialCalls);
  durationWithin(v, `${prefix}.open_duration`, p.openDuration, POLICY_LIMITS.maxOpenDurationUs, "30 days");
  durationWithin(v, `${prefix}.slow_call_duration`, p.slowCallDuration, POLICY_LIMITS.maxSlowCallDurationUs, "1 day");
  durationWithin(v, `${prefix}.half_open_trial_timeout`, p.halfOpenTrialTimeout, POLICY_LIMITS.maxHalfOpenTrialTimeoutUs, "1 day");
  if (v.list.length === 0) {
    const e = effectivePolicy(p);
    if (e.minimumCalls > e.slidingWindowSize) {
      v.add(`${prefix}.minimum_calls`, `must be at most the sliding window size (${e.slidingWindowSize})`);
    }
  }
}

function durationWithin(v: Violations, field: string, d: Duration | undefined, maxUs: number, maxText: string): void {
  if (d === undefined) return;
  const before = v.list.length;
  v.duration(field, d);
  if (v.list.length > before) return;
  const us = durationToMicros(d);
  if (us < POLICY_LIMITS.minDurationUs || us > maxUs) v.add(field, `must be from 1 millisecond to ${maxText}`);
}

/** Validates a request naming one agent (Get, Reset, AcquirePermission). */
export function validateAgentKey(req: { agentKey: string }): void {
  validateFields((v) => v.string("agent_key", req.agentKey, 1, MAX_NAME));
}

/** Validates the filters of a ListCircuitBreakerStatesRequest (page size and token are checked by pagination). */
export function validateList(req: ListCircuitBreakerStatesRequest): void {
  validateFields((v) => {
    v.each("states", req.states, MAX_STATE_FILTERS, (s, i) => v.enumValue(`states[${i}]`, s, CircuitState));
    v.string("page_token", req.pageToken, 0, MAX_PAGE_TOKEN);
  });
}

/** Validates a DeleteCircuitBreakerStatesRequest. */
export function validateDelete(req: DeleteCircuitBreakerStatesRequest): void {
  validateFields((v) => {
    if (req.updatedBefore === undefined) v.add("updated_before", "is required");
    v.timestamp("updated_before", req.updatedBefore);
  });
}

/** Validates a RecordCallOutcomeRequest. */
export function validateRecord(req: RecordCallOutcomeRequest): void {
  validateFields((v) => {
    v.string("agent_key", req.agentKey, 1, MAX_NAME);
    v.duration("duration", req.duration);
    v.string("permit_id", req.permitId, 0, MAX_ID);
    v.string("request_id", req.requestId, 0, MAX_NAME);
  });
}

/** Validates a ListCircuitBreakerTransitionsRequest. */
export function validateListTransitions(req: ListCircuitBreakerTransitionsRequest): void {
  validateFields((v) => {
    v.string("agent_key", req.agentKey, 1, MAX_NAME);
    v.string("page_token", req.pageToken, 0, MAX_PAGE_TOKEN);
  });
}

/** Validates a WatchCircuitBreakersRequest. */
export function validateWatch(req: WatchCircuitBreakersRequest): void {
  validateFields((v) => v.each("agent_keys", req.agentKeys, MAX_WATCHED_AGENTS, (k, i) => v.string(`agent_keys[${i}]`, k, 1, MAX_NAME)));
}
