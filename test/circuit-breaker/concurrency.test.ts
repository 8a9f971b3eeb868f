import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitState, TransitionReason } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { backendName } from "../support/backend.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { breakerClient, fromNow } from "./helpers.js";

// The shared breaker's guarantees under concurrent calls from many clients
// (each with its own HTTP/2 connection, as separate orchestrator replicas).

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

function clients(tenant: string, n: number) {
  return Array.from({ length: n }, () => breakerClient(t.baseUrl, tenant));
}

describe(`concurrent calls on ${backendName}`, () => {
  it("fifty concurrent failing RecordCallOutcome calls (threshold 5) make exactly one CLOSED -> OPEN transition", async () => {
    const tenant = newTenant();
    const many = clients(tenant, 10);
    await many[0]!.saveCircuitBreakerState({
      circuitBreaker: { agentKey: "flaky", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 5 } },
    });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => many[i % many.length]!.recordCallOutcome({ agentKey: "flaky", success: false })),
    );
    const changed = results.filter((r) => r.stateChanged);
    expect(changed).toHaveLength(1);
    expect(changed[0]!.transition).toMatchObject({
      fromState: CircuitState.CLOSED,
      toState: CircuitState.OPEN,
      reason: TransitionReason.CONSECUTIVE_FAILURES,
      consecutiveFailures: 5n,
    });
    // The four calls before it were counted one by one; the 45 after it, made
    // while OPEN, were not counted.
    const counts = results.filter((r) => r.circuitBreaker!.state === CircuitState.CLOSED).map((r) => r.circuitBreaker!.failureCount);
    expect(counts.sort()).toEqual([1n, 2n, 3n, 4n]);
    const history = (await many[0]!.listCircuitBreakerTransitions({ agentKey: "flaky" })).transitions;
    expect(history.map((h) => [h.fromState, h.toState])).toEqual([[CircuitState.CLOSED, CircuitState.OPEN]]);
  });

  it("concurrent saves with the same etag: exactly one wins, the others are ABORTED, and the stored breaker is the winner's", async () => {
    const tenant = newTenant();
    const many = clients(tenant, 8);
    const v1 = (await many[0]!.saveCircuitBreakerState({ circuitBreaker: { agentKey: "contended", state: CircuitState.CLOSED } })).circuitBreaker!;
    const states = [CircuitState.OPEN, CircuitState.FORCED_OPEN, CircuitState.DISABLED, CircuitState.HALF_OPEN];
    const results = await Promise.allSettled(
      many.map((c, i) => c.saveCircuitBreakerState({ etag: v1.etag, circuitBreaker: { agentKey: "contended", state: states[i % states.length]! } })),
    );
    const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value.circuitBreaker!] : []));
    const lost = results.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason).code] : []));
    expect(won).toHaveLength(1);
    expect(lost).toEqual(Array.from({ length: many.length - 1 }, () => Code.Aborted));
    expect((await many[0]!.getCircuitBreakerState({ agentKey: "contended" })).circuitBreaker).toEqual(won[0]);
  });

  it("concurrent AcquirePermission calls on an expired OPEN breaker grant exactly the allowed trials, with one move to HALF_OPEN", async () => {
    const tenant = newTenant();
    const many = clients(tenant, 10);
    await many[0]!.saveCircuitBreakerState({
      circuitBreaker: { agentKey: "recovering", state: CircuitState.OPEN, resetAt: fromNow(-1), policy: { halfOpenTrialCalls: 3 } },
    });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => many[i % many.length]!.acquirePermission({ agentKey: "recovering" })));
    expect(answers.filter((a) => a.permitted)).toHaveLength(3);
    expect(answers.filter((a) => a.transition !== undefined)).toHaveLength(1);
    const stored = (await many[0]!.getCircuitBreakerState({ agentKey: "recovering" })).circuitBreaker!;
    expect(stored).toMatchObject({ state: CircuitState.HALF_OPEN, trialCallsGranted: 3 });
  });

  it("concurrent RecoverCircuitBreakers calls change each expired breaker once; those not yet due stay OPEN", async () => {
    const tenant = newTenant();
    const many = clients(tenant, 8);
    const expired = Array.from({ length: 12 }, (_, i) => `expired-${String(i).padStart(2, "0")}`);
    const future = ["future-a", "future-b", "future-c"];
    for (const agentKey of expired) {
      await many[0]!.saveCircuitBreakerState({ circuitBreaker: { agentKey, state: CircuitState.OPEN, resetAt: fromNow(-5) } });
    }
    for (const agentKey of future) {
      await many[0]!.saveCircuitBreakerState({ circuitBreaker: { agentKey, state: CircuitState.OPEN, resetAt: fromNow(3600) } });
    }
    const results = await Promise.all(many.map((c) => c.recoverCircuitBreakers({})));
    const recovered = results.flatMap((r) => r.circuitBreakers.map((b) => b.agentKey));
    expect(recovered.sort()).toEqual(expired);
    for (const agentKey of expired) {
      const history = (await many[0]!.listCircuitBreakerTransitions({ agentKey })).transitions;
      expect(history.filter((h) => h.reason === TransitionReason.OPEN_DURATION_ELAPSED)).toHaveLength(1);
    }
    const open = (await many[0]!.listCircuitBreakerStates({ states: [CircuitState.OPEN] })).circuitBreakers.map((b) => b.agentKey);
    expect(open).toEqual(future);
    const halfOpen = await many[0]!.listCircuitBreakerStates({ states: [CircuitState.HALF_OPEN] });
    expect(halfOpen.circuitBreakers).toHaveLength(expired.length);
  });
});
