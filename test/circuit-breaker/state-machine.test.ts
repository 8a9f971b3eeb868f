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

/** HALF_OPEN with `n` live trial permits t0, t1, ... granted at NOW. */
function withTrials(n: number): BreakerFields {
  let b = entered("HALF_OPEN", NOW - 1);
  for (let i = 0; i < n; i++) b = acquirePermission(b, policy, NOW, `t${i}`).next!;
  return b;
}

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
    expect(run(withTrials(2), [false, false], policy).reasons).toEqual(["HALF_OPEN->CLOSED:TRIAL_CALLS_SUCCEEDED"]);
    const reopened = run(withTrials(2), [false, true], policy);
    expect(reopened.reasons).toEqual(["HALF_OPEN->OPEN:TRIAL_CALL_FAILED"]);
    expect(reopened.b.resetAtUs).toBe(NOW + policy.openDurationUs);
  });

  it("in HALF_OPEN counts only reports of live trial permits, each once", () => {
    const b = withTrials(2);
    // Never granted a trial: no live permit of that id.
    expect(recordOutcome(b, false, policy, NOW, "someone-else")).toEqual({ next: undefined, transition: undefined, counted: false });
    // A permit's report uses it up: its second report does not count.
    const first = recordOutcome(b, false, policy, NOW, "t0");
    expect(first).toMatchObject({ counted: true, next: { state: "HALF_OPEN", successCount: 1, trialPermits: [{ id: "t1" }] } });
    expect(recordOutcome(first.next!, false, policy, NOW, "t0").counted).toBe(false);
    // An expired permit counts no more, failure or success.
    const late = NOW + policy.halfOpenTrialTimeoutUs;
    expect(recordOutcome(first.next!, true, policy, late, "t1")).toEqual({ next: undefined, transition: undefined, counted: false });
    // Without a permit id: the oldest live permit's report; none live, not counted.
    expect(recordOutcome(b, false, policy, NOW)).toMatchObject({ counted: true, next: { trialPermits: [{ id: "t1" }] } });
    expect(recordOutcome(entered("HALF_OPEN", NOW), false, policy, NOW)).toMatchObject({ counted: false, next: undefined });
  });

  it("counts nothing while OPEN, FORCED_OPEN or DISABLED", () => {
    for (const state of ["OPEN", "FORCED_OPEN", "DISABLED"] as const) {
      expect(recordOutcome(entered(state), true, policy, NOW)).toEqual({ next: undefined, transition: undefined, counted: false });
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
    expect(acquirePermission(open, policy, NOW, "p")).toMatchObject({ permitted: false, retryAtUs: NOW + 5, next: undefined });
    const after = acquirePermission(open, policy, NOW + 5, "p");
    expect(after).toMatchObject({ permitted: true, next: { state: "HALF_OPEN", trialCallsGranted: 1, openedAtUs: NOW - 10, resetAtUs: null } });
    expect(after.permit).toEqual({ id: "p", expiresAtUs: NOW + 5 + policy.halfOpenTrialTimeoutUs });
    expect(after.transition).toMatchObject({ from: "OPEN", to: "HALF_OPEN", reason: "OPEN_DURATION_ELAPSED" });
  });

  it("grants HALF_OPEN trials up to the policy's number, then refuses until the first expires", () => {
    let b = entered("HALF_OPEN", NOW);
    const answers = [];
    for (let i = 0; i < 4; i++) {
      const p = acquirePermission(b, policy, NOW + i, `t${i}`);
      answers.push(p.permitted);
      if (!p.permitted) expect(p.retryAtUs).toBe(NOW + policy.halfOpenTrialTimeoutUs);
      b = p.next ?? b;
    }
    expect(answers).toEqual([true, true, false, false]);
    // t0 expires: its place is given back, once.
    const later = acquirePermission(b, policy, NOW + policy.halfOpenTrialTimeoutUs, "t9");
    expect(later).toMatchObject({ permitted: true, next: { trialCallsGranted: 3, trialPermits: [{ id: "t1" }, { id: "t9" }] } });
    expect(acquirePermission(later.next!, policy, NOW + policy.halfOpenTrialTimeoutUs, "t10").permitted).toBe(false);
  });

  it("a success counted keeps its place: trials plus successes never pass the policy's number", () => {
    const b = recordOutcome(withTrials(2), false, policy, NOW, "t0").next!;
    expect(acquirePermission(b, policy, NOW, "x").permitted).toBe(false);
  });

  it("always permits CLOSED and DISABLED and never FORCED_OPEN, writing nothing", () => {
    expect(acquirePermission(entered("CLOSED"), policy, NOW, "p")).toMatchObject({ permitted: true, next: undefined, permit: undefined });
    expect(acquirePermission(entered("DISABLED"), policy, NOW, "p")).toMatchObject({ permitted: true, next: undefined, permit: undefined });
    expect(acquirePermission(entered("FORCED_OPEN"), policy, NOW, "p")).toMatchObject({ permitted: false, retryAtUs: null, next: undefined });
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
