import { FailureThresholdType } from "../../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import type { EffectivePolicy } from "./policy.js";

// The circuit breaker's state machine as pure functions: given a breaker as
// stored (read under its row lock), the policy in force and the database's
// clock, what it becomes. The query module runs each step inside one
// transaction holding the row lock, so replicas apply it one call at a time
// (see src/db/queries/circuit-breakers.ts).

/** A state, as stored ("OPEN"): the CircuitState name without its prefix. */
export type StateName = "CLOSED" | "OPEN" | "HALF_OPEN" | "FORCED_OPEN" | "DISABLED";
/** A reason, as stored: the TransitionReason name without its prefix. */
export type ReasonName =
  | "CONSECUTIVE_FAILURES"
  | "FAILURE_RATE"
  | "OPEN_DURATION_ELAPSED"
  | "TRIAL_CALLS_SUCCEEDED"
  | "TRIAL_CALL_FAILED"
  | "SAVED"
  | "RESET";

/** The state machine's part of a breaker. Times are microseconds since the Unix epoch. */
export interface BreakerFields {
  state: StateName;
  failureCount: number;
  successCount: number;
  consecutiveFailures: number;
  /** Outcomes of the most recent calls in CLOSED, oldest first: '0' success, '1' failure. */
  recentOutcomes: string;
  trialCallsGranted: number;
  /**
   * HALF_OPEN: the trial permits granted in this period and neither reported
   * nor dropped as expired, oldest first. Each is a lease: once expired it no
   * longer takes a trial's place, and its report no longer counts.
   */
  trialPermits: TrialPermit[];
  openedAtUs: number | null;
  resetAtUs: number | null;
}

/** A HALF_OPEN trial permit: its id (handed to the caller) and when it expires. */
export interface TrialPermit {
  id: string;
  expiresAtUs: number;
}

/** A state change and the counts that caused it (those of the state it leaves). */
export interface TransitionFacts {
  from: StateName;
  to: StateName;
  reason: ReasonName;
  failureCount: number;
  successCount: number;
  consecutiveFailures: number;
  windowCalls: number;
  windowFailures: number;
}

/** The result of one step: the breaker after it (undefined: nothing to write), and the transition if any. */
export interface Step {
  next: BreakerFields | undefined;
  transition: TransitionFacts | undefined;
}

/** A breaker that has just entered `state`, with nothing counted. */
export function entered(state: StateName, openedAtUs: number | null = null, resetAtUs: number | null = null): BreakerFields {
  return {
    state,
    failureCount: 0,
    successCount: 0,
    consecutiveFailures: 0,
    recentOutcomes: "",
    trialCallsGranted: 0,
    trialPermits: [],
    openedAtUs,
    resetAtUs,
  };
}

/** The transition from `b` to `to`, recording `b`'s counts. */
export function transitionOf(b: BreakerFields, to: StateName, reason: ReasonName): TransitionFacts {
  return {
    from: b.state,
    to,
    reason,
    failureCount: b.failureCount,
    successCount: b.successCount,
    consecutiveFailures: b.consecutiveFailures,
    windowCalls: b.recentOutcomes.length,
    windowFailures: failuresIn(b.recentOutcomes),
  };
}

function failuresIn(window: string): number {
  let n = 0;
  for (const c of window) if (c === "1") n++;
  return n;
}

/** Whether a reported call counts as a failure under the policy (a slow success does). */
export function isFailure(success: boolean, durationUs: number, policy: EffectivePolicy): boolean {
  return !success || (policy.slowCallDurationUs !== null && durationUs >= policy.slowCallDurationUs);
}

function open(b: BreakerFields, reason: ReasonName, policy: EffectivePolicy, nowUs: number): Step {
  return { next: entered("OPEN", nowUs, nowUs + policy.openDurationUs), transition: transitionOf(b, "OPEN", reason) };
}

/** The permits of `b` that have not expired at `nowUs`. */
function livePermits(b: BreakerFields, nowUs: number): TrialPermit[] {
  return b.trialPermits.filter((p) => p.expiresAtUs > nowUs);
}

/** A step's result, and whether the outcome was counted. */
export interface Outcome extends Step {
  counted: boolean;
}

/**
 * Counts one call's outcome. CLOSED: counted, and opens when the threshold is
 * crossed. HALF_OPEN: only the report of a live trial permit counts, and uses
 * the permit up (`permitId`; empty: the oldest live permit, so a client that
 * keeps no permit ids still ends trials); a failure reopens, the policy's
 * number of successes closes. A report without a live permit (expired,
 * already reported, never granted) is not counted. OPEN, FORCED_OPEN,
 * DISABLED: not counted. Nothing counted, nothing written.
 */
export function recordOutcome(b: BreakerFields, failed: boolean, policy: EffectivePolicy, nowUs: number, permitId = ""): Outcome {
  if (b.state === "HALF_OPEN") {
    const live = livePermits(b, nowUs);
    const permit = permitId === "" ? live[0] : live.find((p) => p.id === permitId);
    if (permit === undefined) return { next: undefined, transition: undefined, counted: false };
    const rest = { ...b, trialPermits: live.filter((p) => p !== permit) };
    return { ...countOutcome(rest, failed, policy, nowUs), counted: true };
  }
  const step = countOutcome(b, failed, policy, nowUs);
  return { ...step, counted: step.next !== undefined };
}

function countOutcome(b: BreakerFields, failed: boolean, policy: EffectivePolicy, nowUs: number): Step {
  switch (b.state) {
    case "CLOSED": {
      const counted: BreakerFields = {
        ...b,
        failureCount: b.failureCount + (failed ? 1 : 0),
        successCount: b.successCount + (failed ? 0 : 1),
        consecutiveFailures: failed ? b.consecutiveFailures + 1 : 0,
        recentOutcomes: (b.recentOutcomes + (failed ? "1" : "0")).slice(-policy.slidingWindowSize),
      };
      if (policy.thresholdType === FailureThresholdType.CONSECUTIVE_FAILURES) {
        if (counted.consecutiveFailures >= policy.consecutiveFailureThreshold) {
          return open(counted, "CONSECUTIVE_FAILURES", policy, nowUs);
        }
      } else {
        const calls = counted.recentOutcomes.length;
        if (calls >= policy.minimumCalls && failuresIn(counted.recentOutcomes) * 100 >= policy.failureRateThreshold * calls) {
          return open(counted, "FAILURE_RATE", policy, nowUs);
        }
      }
      return { next: counted, transition: undefined };
    }
    case "HALF_OPEN": {
      if (failed) return open({ ...b, failureCount: b.failureCount + 1 }, "TRIAL_CALL_FAILED", policy, nowUs);
      const counted = { ...b, successCount: b.successCount + 1 };
      if (counted.successCount >= policy.halfOpenTrialCalls) {
        return { next: entered("CLOSED"), transition: transitionOf(counted, "CLOSED", "TRIAL_CALLS_SUCCEEDED") };
      }
      return { next: counted, transition: undefined };
    }
    case "OPEN":
    case "FORCED_OPEN":
    case "DISABLED":
      return { next: undefined, transition: undefined };
  }
}

/** The answer of AcquirePermission, with what to write. */
export interface Permission extends Step {
  permitted: boolean;
  /** When refused because OPEN: the breaker's reset time; because every trial is taken: when the first live one expires. */
  retryAtUs: number | null;
  /** The trial permit granted (HALF_OPEN), if any. */
  permit: TrialPermit | undefined;
}

/**
 * Decides whether one call may go to the agent now. OPEN past its reset time
 * moves to HALF_OPEN and grants the first trial; HALF_OPEN grants trials while
 * the live permits and the successes counted are fewer than the policy's
 * number, counting every replica's grants (they are stored). A trial permit
 * (`newPermitId`) expires after the policy's trial timeout: then it no longer
 * takes a place, so a replica that took trials and never reports cannot keep
 * the others out.
 */
export function acquirePermission(b: BreakerFields, policy: EffectivePolicy, nowUs: number, newPermitId: string): Permission {
  const nothing = { next: undefined, transition: undefined, permit: undefined };
  const permit = { id: newPermitId, expiresAtUs: nowUs + policy.halfOpenTrialTimeoutUs };
  switch (b.state) {
    case "CLOSED":
    case "DISABLED":
      return { ...nothing, permitted: true, retryAtUs: null };
    case "FORCED_OPEN":
      return { ...nothing, permitted: false, retryAtUs: null };
    case "OPEN":
      if (b.resetAtUs !== null && nowUs < b.resetAtUs) return { ...nothing, permitted: false, retryAtUs: b.resetAtUs };
      return {
        next: { ...entered("HALF_OPEN", b.openedAtUs ?? nowUs), trialCallsGranted: 1, trialPermits: [permit] },
        transition: transitionOf(b, "HALF_OPEN", "OPEN_DURATION_ELAPSED"),
        permitted: true,
        retryAtUs: null,
        permit,
      };
    case "HALF_OPEN": {
      const live = livePermits(b, nowUs);
      if (live.length + b.successCount >= policy.halfOpenTrialCalls) {
        // Every place is taken by a live trial (or a success): the first to expire frees one.
        return { ...nothing, permitted: false, retryAtUs: live.length > 0 ? Math.min(...live.map((p) => p.expiresAtUs)) : null };
      }
      return {
        next: { ...b, trialCallsGranted: b.trialCallsGranted + 1, trialPermits: [...live, permit] },
        transition: undefined,
        permitted: true,
        retryAtUs: null,
        permit,
      };
    }
  }
}

/** ResetCircuitBreaker: CLOSED with nothing counted, whatever the state. */
export function reset(b: BreakerFields): Step {
  return { next: entered("CLOSED"), transition: b.state === "CLOSED" ? undefined : transitionOf(b, "CLOSED", "RESET") };
}

/**
 * SaveCircuitBreakerState: the client's state and counts replace the stored
 * ones; the state machine's bookkeeping starts afresh. OPEN without times
 * opens now for the policy's duration; HALF_OPEN without `opened_at` opened now.
 */
export function save(
  stored: BreakerFields,
  wanted: { state: StateName; failureCount: number; successCount: number; openedAtUs: number | null; resetAtUs: number | null },
  policy: EffectivePolicy,
  nowUs: number,
): Step {
  const live = wanted.state === "OPEN" || wanted.state === "HALF_OPEN";
  const openedAtUs = live ? (wanted.openedAtUs ?? nowUs) : null;
  const resetAtUs = wanted.state === "OPEN" ? (wanted.resetAtUs ?? openedAtUs! + policy.openDurationUs) : null;
  return {
    next: { ...entered(wanted.state, openedAtUs, resetAtUs), failureCount: wanted.failureCount, successCount: wanted.successCount },
    transition: stored.state === wanted.state ? undefined : transitionOf(stored, wanted.state, "SAVED"),
  };
}
