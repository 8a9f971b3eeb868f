import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import {
  type CircuitBreakerPolicy,
  CircuitBreakerPolicySchema,
  FailureThresholdType,
} from "../../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { durationFromMicros, durationToMicros } from "../../db/convert.js";

// Breaker policies: the server defaults the contract documents, and how an
// agent's stored overrides (zero / unset = default) become the policy in force.

/** The policy in force for one breaker, in the units the state machine uses. */
export interface EffectivePolicy {
  thresholdType: FailureThresholdType.CONSECUTIVE_FAILURES | FailureThresholdType.FAILURE_RATE;
  consecutiveFailureThreshold: number;
  /** Percent, (0, 100]. */
  failureRateThreshold: number;
  slidingWindowSize: number;
  minimumCalls: number;
  openDurationUs: number;
  halfOpenTrialCalls: number;
  /** A success at least this slow counts as a failure; null: never. */
  slowCallDurationUs: number | null;
  /** How long a HALF_OPEN trial permit lives unless reported. */
  halfOpenTrialTimeoutUs: number;
}

/** The server defaults, as documented on CircuitBreakerPolicy. */
export const DEFAULT_POLICY: EffectivePolicy = {
  thresholdType: FailureThresholdType.CONSECUTIVE_FAILURES,
  consecutiveFailureThreshold: 5,
  failureRateThreshold: 50,
  slidingWindowSize: 100,
  minimumCalls: 10,
  openDurationUs: 60_000_000,
  halfOpenTrialCalls: 3,
  slowCallDurationUs: null,
  halfOpenTrialTimeoutUs: 60_000_000,
};

/** Limits of each policy field, checked by validation. */
export const POLICY_LIMITS = {
  consecutiveFailureThreshold: 10_000,
  slidingWindowSize: 1_000,
  minimumCalls: 1_000,
  halfOpenTrialCalls: 1_000,
  minDurationUs: 1_000,
  maxOpenDurationUs: 30 * 24 * 3600 * 1_000_000,
  maxSlowCallDurationUs: 24 * 3600 * 1_000_000,
  maxHalfOpenTrialTimeoutUs: 24 * 3600 * 1_000_000,
} as const;

/** An agent's overrides with every default filled in. */
export function effectivePolicy(p: CircuitBreakerPolicy | undefined): EffectivePolicy {
  if (p === undefined) return DEFAULT_POLICY;
  return {
    thresholdType: p.failureThresholdType === FailureThresholdType.FAILURE_RATE
      ? FailureThresholdType.FAILURE_RATE
      : DEFAULT_POLICY.thresholdType,
    consecutiveFailureThreshold: p.consecutiveFailureThreshold || DEFAULT_POLICY.consecutiveFailureThreshold,
    failureRateThreshold: p.failureRateThreshold || DEFAULT_POLICY.failureRateThreshold,
    slidingWindowSize: p.slidingWindowSize || DEFAULT_POLICY.slidingWindowSize,
    minimumCalls: p.minimumCalls || DEFAULT_POLICY.minimumCalls,
    openDurationUs: p.openDuration === undefined ? DEFAULT_POLICY.openDurationUs : durationToMicros(p.openDuration),
    halfOpenTrialCalls: p.halfOpenTrialCalls || DEFAULT_POLICY.halfOpenTrialCalls,
    slowCallDurationUs: p.slowCallDuration === undefined ? DEFAULT_POLICY.slowCallDurationUs : durationToMicros(p.slowCallDuration),
    halfOpenTrialTimeoutUs:
      p.halfOpenTrialTimeout === undefined ? DEFAULT_POLICY.halfOpenTrialTimeoutUs : durationToMicros(p.halfOpenTrialTimeout),
  };
}

/** The CircuitBreakerPolicy message of a policy in force (every field set). */
export function effectivePolicyMessage(e: EffectivePolicy): CircuitBreakerPolicy {
  return create(CircuitBreakerPolicySchema, {
    failureThresholdType: e.thresholdType,
    consecutiveFailureThreshold: e.consecutiveFailureThreshold,
    failureRateThreshold: e.failureRateThreshold,
    slidingWindowSize: e.slidingWindowSize,
    minimumCalls: e.minimumCalls,
    openDuration: durationFromMicros(e.openDurationUs),
    halfOpenTrialCalls: e.halfOpenTrialCalls,
    slowCallDuration: e.slowCallDurationUs === null ? undefined : durationFromMicros(e.slowCallDurationUs),
    halfOpenTrialTimeout: durationFromMicros(e.halfOpenTrialTimeoutUs),
  });
}

/** The stored form of an agent's overrides: protobuf JSON with proto field names; defaults are omitted. */
export function policyToDb(p: CircuitBreakerPolicy): Record<string, unknown> {
  return toJson(CircuitBreakerPolicySchema, p, { useProtoFieldName: true }) as Record<string, unknown>;
}

/** The overrides of a stored policy column. */
export function policyFromDb(json: Record<string, unknown>): CircuitBreakerPolicy {
  return fromJson(CircuitBreakerPolicySchema, json as JsonValue);
}
