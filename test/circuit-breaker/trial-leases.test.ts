import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { backendName } from "../support/backend.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { breakerClient, fromNow } from "./helpers.js";

// Issue 11, section 2: HALF_OPEN trial permits are leases. A replica that
// takes every trial and never reports (it died) holds them only for the
// policy's half_open_trial_timeout; then another caller is granted a trial,
// and the late report of an expired permit changes nothing. Outcomes of
// callers never granted a trial do not count in HALF_OPEN.

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

/** Two trials, each living 2 seconds (short through the policy, as an operator would set it). */
const policy = { halfOpenTrialCalls: 2, halfOpenTrialTimeout: { seconds: 2n, nanos: 0 } };
const ms = (ts: { seconds: bigint; nanos: number } | undefined) => Number(ts!.seconds) * 1000 + Math.floor(ts!.nanos / 1e6);

async function untilPast(timeMs: number) {
  while (Date.now() <= timeMs + 20) await new Promise((r) => setTimeout(r, Math.max(10, timeMs + 25 - Date.now())));
}

describe(`HALF_OPEN trial permits on ${backendName}`, () => {
  it("a replica takes every trial and never reports: after the trial timeout another caller gets a trial, and the late report changes nothing", async () => {
    const tenant = newTenant();
    const replicaA = breakerClient(t.baseUrl, tenant);
    const replicaB = breakerClient(t.baseUrl, tenant, "connect");
    await replicaA.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.OPEN, resetAt: fromNow(-1), policy } });

    // A takes both trials (the first moves the breaker to HALF_OPEN).
    const a1 = await replicaA.acquirePermission({ agentKey: "a" });
    const a2 = await replicaA.acquirePermission({ agentKey: "a" });
    expect([a1.permitted, a2.permitted]).toEqual([true, true]);
    expect(a1.circuitBreaker!.state).toBe(CircuitState.HALF_OPEN);
    expect(a1.permitId).not.toBe("");
    expect(a2.permitId).not.toBe(a1.permitId);
    // B is refused, told when the first trial expires.
    const refused = await replicaB.acquirePermission({ agentKey: "a" });
    expect(refused.permitted).toBe(false);
    expect(refused.permitId).toBe("");
    expect(ms(refused.retryTime)).toBe(ms(a1.permitExpireTime));
    expect(ms(a1.permitExpireTime) - ms(a1.circuitBreaker!.updateTime)).toBe(2_000);

    // A never reports. Past both expiry times, B is granted a trial.
    await untilPast(ms(a2.permitExpireTime));
    const b1 = await replicaB.acquirePermission({ agentKey: "a" });
    expect(b1.permitted).toBe(true);
    expect(b1.circuitBreaker).toMatchObject({ state: CircuitState.HALF_OPEN, trialCallsGranted: 3 });

    // A's late reports, failure and success: not counted, nothing written.
    for (const [permitId, success] of [[a1.permitId, false], [a2.permitId, true]] as const) {
      const late = await replicaA.recordCallOutcome({ agentKey: "a", success, permitId });
      expect(late).toMatchObject({ counted: false, stateChanged: false });
      expect(late.circuitBreaker).toMatchObject({ state: CircuitState.HALF_OPEN, successCount: 0n, failureCount: 0n, etag: b1.circuitBreaker!.etag });
    }

    // B's own trial counts, once; a second trial closes the breaker.
    const counted = await replicaB.recordCallOutcome({ agentKey: "a", success: true, permitId: b1.permitId });
    expect(counted).toMatchObject({ counted: true, stateChanged: false, circuitBreaker: { successCount: 1n } });
    expect((await replicaB.recordCallOutcome({ agentKey: "a", success: true, permitId: b1.permitId })).counted).toBe(false);
    const b2 = await replicaB.acquirePermission({ agentKey: "a" });
    expect(b2.permitted).toBe(true);
    const closed = await replicaB.recordCallOutcome({ agentKey: "a", success: true, permitId: b2.permitId });
    expect(closed).toMatchObject({ counted: true, stateChanged: true, circuitBreaker: { state: CircuitState.CLOSED } });
    const transitions = await replicaA.listCircuitBreakerTransitions({ agentKey: "a" });
    expect(transitions.transitions.map((x) => CircuitState[x.toState])).toEqual(["CLOSED", "HALF_OPEN", "OPEN"]);
  });

  it("outcomes of callers never granted a trial do not count in HALF_OPEN (three successes no longer close it)", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const saved = await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.HALF_OPEN } });
    for (const permitId of ["", "", "", "not-a-permit"]) {
      for (const success of [true, true, true, false]) {
        const r = await client.recordCallOutcome({ agentKey: "a", success, permitId });
        expect(r).toMatchObject({ counted: false, stateChanged: false, circuitBreaker: { state: CircuitState.HALF_OPEN, etag: saved.circuitBreaker!.etag } });
      }
    }
    // A client that keeps no permit ids: its report counts for the trial it was granted.
    const granted = await client.acquirePermission({ agentKey: "a" });
    expect(granted.permitted).toBe(true);
    expect(await client.recordCallOutcome({ agentKey: "a", success: false })).toMatchObject({
      counted: true,
      stateChanged: true,
      circuitBreaker: { state: CircuitState.OPEN },
    });
  });

  it("the policy's trial timeout has a documented default and bounds", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const saved = await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED } });
    expect(saved.circuitBreaker!.effectivePolicy!.halfOpenTrialTimeout).toMatchObject({ seconds: 60n, nanos: 0 });
    for (const halfOpenTrialTimeout of [{ seconds: 0n, nanos: 999_999 }, { seconds: 86_401n, nanos: 0 }]) {
      await expect(
        client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED, policy: { halfOpenTrialTimeout } } }),
      ).rejects.toMatchObject({ rawMessage: expect.stringContaining("policy.half_open_trial_timeout") });
    }
  });
});
