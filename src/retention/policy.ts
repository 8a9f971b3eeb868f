import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { type Duration, DurationSchema } from "@bufbuild/protobuf/wkt";
import { type RetentionPolicy, RetentionPolicySchema } from "../../gen/orchestration/state/v1/retention_service_pb.js";
import { MAX_RETENTION_SECONDS, MIN_RETENTION_SECONDS, type RetentionDefaults } from "../config.js";
import type { FieldViolation } from "../errors/invalid-argument.js";

// Retention policies: a tenant's saved overrides (a RetentionPolicy message,
// stored as protobuf JSON), the server's defaults (RETENTION_* settings), and
// the policy in force, in seconds per kind of record (0: kept forever).

/** The policy in force: max age in seconds per kind of record; 0 keeps forever. */
export type EffectiveRetention = RetentionDefaults;

/** The fields of a policy, in contract order: message field (camelCase) and proto name. */
export const POLICY_FIELDS = [
  ["completedExecutionMaxAge", "completed_execution_max_age"],
  ["failedExecutionMaxAge", "failed_execution_max_age"],
  ["cancelledExecutionMaxAge", "cancelled_execution_max_age"],
  ["routingDecisionMaxAge", "routing_decision_max_age"],
  ["closedCircuitBreakerMaxAge", "closed_circuit_breaker_max_age"],
  ["circuitBreakerTransitionMaxAge", "circuit_breaker_transition_max_age"],
] as const satisfies readonly (readonly [keyof EffectiveRetention & keyof RetentionPolicy, string])[];

const jsonOptions = { useProtoFieldName: true } as const;

/** The saved overrides with the defaults filled in. */
export function effectiveRetention(saved: RetentionPolicy | undefined, defaults: RetentionDefaults): EffectiveRetention {
  const effective = { ...defaults };
  for (const [key] of POLICY_FIELDS) {
    const value = saved?.[key];
    if (value !== undefined) effective[key] = Number(value.seconds);
  }
  return effective;
}

/** The policy in force as a message, every field set. */
export function retentionMessage(effective: EffectiveRetention): RetentionPolicy {
  const policy = create(RetentionPolicySchema);
  for (const [key] of POLICY_FIELDS) policy[key] = create(DurationSchema, { seconds: BigInt(effective[key]) });
  return policy;
}

/** The violations of a policy to save, each naming its field under `prefix`. */
export function policyViolations(policy: RetentionPolicy | undefined, prefix: string): FieldViolation[] {
  const violations: FieldViolation[] = [];
  for (const [key, name] of POLICY_FIELDS) {
    const value: Duration | undefined = policy?.[key];
    if (value === undefined) continue;
    const seconds = Number(value.seconds);
    if (value.nanos !== 0 || (seconds !== 0 && (seconds < MIN_RETENTION_SECONDS || seconds > MAX_RETENTION_SECONDS))) {
      violations.push({
        field: `${prefix}.${name}`,
        description: `must be 0s (keep forever) or whole seconds from ${MIN_RETENTION_SECONDS}s (1 minute) to ${MAX_RETENTION_SECONDS}s (36,500 days)`,
      });
    }
  }
  return violations;
}

/** The stored form of a policy (protobuf JSON, proto field names). */
export function policyToJson(policy: RetentionPolicy): object {
  return toJson(RetentionPolicySchema, policy, jsonOptions) as object;
}

/** A stored policy as a message. */
export function policyFromJson(json: object): RetentionPolicy {
  return fromJson(RetentionPolicySchema, json as JsonValue);
}
