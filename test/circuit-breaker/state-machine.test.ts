import { describe, expect, it } from "vitest";
import { FailureThresholdType } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { DEFAULT_POLICY, type EffectivePolicy } from "../../src/services/circuit-breaker/policy.js";
import {
  acquirePermission,
  type BreakerFields,
  entered,
  isFailure,
  recordOutcome,
  reset,
  save,
} from "../../src/services/circuit-breaker/state-machine.js";

// The pure state machine, step by step. The storage tests check that the
// server applies it atomically; these check what it decides.

const NOW = 1_800_000_000_000_000;
const policy: EffectivePolicy = { ...DEFAULT_POLICY, consecutiveFailureThreshold: 3, halfOpenTrialCalls: 2 };
const ratePolicy: EffectivePolicy = {
  ...DEFAULT_POLICY,
  thresholdType: FailureThresholdType.FAILURE_RATE,
  failureRateThreshold: 50,
  slidingWindowSize: 4,
  minimumCalls: 4,
};

function run(b: BreakerFields, outcomes: boolean[], p: EffectivePolicy): { b: BreakerFields; reasons: string[] } {
  const reasons: string[] = [];
  for (const failed of outcomes) {
    const step = recordOutcome(b, failed, p, NOW);
    if (step.transition) reasons.push(`${step.transition.from}->${step.transition.to}:${step.transition.reason}`);
    b = step.next ?? b;
  }
  return { b, reasons };
}

describe("recordOutcome", () => {
  it("opens a CLOSED breaker on the threshold-th failure in a row, for the policy's open duration", () => {
    const { b, reasons } = run(entered("CLOSED"), [true, true, false, true, true, true], policy);
    expect(reasons).toEqual(["CLOSED->OPEN:CONSECUTIVE_FAILURES"]);
    expect(b).toMatchObject({ state: "OPEN", openedAtUs: NOW, resetAtUs: NOW + policy.openDurationUs, failureCount: 0 });
  });

  it("records the counts that caused the opening in the transition", () => {
    const step = recordOutcome({ ...entered("CLOSED"), failureCount: 7, successCount: 4, consecutiveFailures: 2 }, true, policy, NOW);
    expect(step.transition).toMatchObject({ failureCount: 8, successCount: 4, consecutiveFailures: 3, windowCalls: 1, windowFailures: 1 });
  });

  it("with FAILURE_RATE, waits for the minimum number of calls, then opens at the rate over the window", () => {
    const early = run(entered("CLOSED"), [true, true, true], ratePolicy);
    expect(early.b.state).toBe("CLOSED");
    const { reasons } = run(entered("CLOSED"), [false, false, false, true, false, true, true], ratePolicy);
    // Window of 4 after the 6th call: 0,1,0,1 = 50% -> opens there.
    expect(reasons).toEqual(["CLOSED->OPEN:FAILURE_RATE"]);
    const below = run(entered("CLOSED"), [true, false, false, false, true, false, false], ratePolicy);
    expect(below.b.state).toBe("CLOSED");
    expect(below.b.recentOutcomes).toBe("0100"); // only the last 4 calls are kept
  });

  it("closes a HALF_OPEN breaker after the allowed trial successes, and reopens it on a failure", () => {
    expect(run(entered("HALF_OPEN", NOW - 1), [false, false], policy).reasons).toEqual(["HALF_OPEN->CLOSED:TRIAL_CALLS_SUCCEEDED"]);
    const reopened = run(entered("HALF_OPEN", NOW - 1), [false, true], policy);
    expect(reopened.reasons).toEqual(["HALF_OPEN->OPEN:TRIAL_CALL_FAILED"]);
    expect(reopened.b.resetAtUs).toBe(NOW + policy.openDurationUs);
  });

  it("counts nothing while OPEN, FORCED_OPEN or DISABLED", () => {
    for (const state of ["OPEN", "FORCED_OPEN", "DISABLED"] as const) {
      expect(recordOutcome(entered(state), true, policy, NOW)).toEqual({ next: undefined, transition: undefined });
    }
  });

  it("counts a success at least as slow as slow_call_duration as a failure", () => {
    const slow = { ...policy, slowCallDurationUs: 1_000_000 };
    expect(isFailure(true, 999_999, slow)).toBe(false);
    expect(isFailure(true, 1_000_000, slow)).toBe(true);
    expect(isFailure(true, 10_000_000, policy)).toBe(false);
    expect(isFailure(false, 0, policy)).toBe(true);
  });
});

describe("acquirePermission", () => {
  it("refuses OPEN before reset_at with the reset time, and moves it to HALF_OPEN with the first trial after", () => {
    const open = entered("OPEN", NOW - 10, NOW + 5);
    expect(acquirePermission(open, policy, NOW)).toMatchObject({ permitted: false, retryAtUs: NOW + 5, next: undefined });
    const after = acquirePermission(open, policy, NOW + 5);
    expect(after).toMatchObject({ permitted: true, next: { state: "HALF_OPEN", trialCallsGranted: 1, openedAtUs: NOW - 10, resetAtUs: null } });
    expect(after.transition).toMatchObject({ from: "OPEN", to: "HALF_OPEN", reason: "OPEN_DURATION_ELAPSED" });
  });

  it("grants HALF_OPEN trials up to the policy's number, then refuses", () => {
    let b = entered("HALF_OPEN", NOW);
    const answers = [];
    for (let i = 0; i < 4; i++) {
      const p = acquirePermission(b, policy, NOW);
      answers.push(p.permitted);
      b = p.next ?? b;
    }
    expect(answers).toEqual([true, true, false, false]);
  });

  it("always permits CLOSED and DISABLED and never FORCED_OPEN, writing nothing", () => {
    expect(acquirePermission(entered("CLOSED"), policy, NOW)).toMatchObject({ permitted: true, next: undefined });
    expect(acquirePermission(entered("DISABLED"), policy, NOW)).toMatchObject({ permitted: true, next: undefined });
    expect(acquirePermission(entered("FORCED_OPEN"), policy, NOW)).toMatchObject({ permitted: false, retryAtUs: null, next: undefined });
  });
});

describe("save and reset", () => {
  it("saving OPEN without times opens now for the policy's duration, and records SAVED from the old state", () => {
    const step = save(entered("CLOSED"), { state: "OPEN", failureCount: 2, successCount: 1, openedAtUs: null, resetAtUs: null }, policy, NOW);
    expect(step.next).toMatchObject({ state: "OPEN", openedAtUs: NOW, resetAtUs: NOW + policy.openDurationUs, failureCount: 2 });
    expect(step.transition).toMatchObject({ from: "CLOSED", to: "OPEN", reason: "SAVED" });
  });

  it("saving the same state records no transition", () => {
    expect(save(entered("CLOSED"), { state: "CLOSED", failureCount: 0, successCount: 0, openedAtUs: null, resetAtUs: null }, policy, NOW).transition).toBeUndefined();
  });

  it("reset closes any state and records RESET unless already CLOSED", () => {
    expect(reset(entered("FORCED_OPEN")).transition).toMatchObject({ from: "FORCED_OPEN", to: "CLOSED", reason: "RESET" });
    expect(reset(entered("CLOSED")).transition).toBeUndefined();
  });
});
