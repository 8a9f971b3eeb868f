import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  CircuitState,
  FailureThresholdType,
  TransitionReason,
} from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { backendName } from "../support/backend.js";
import { grpcJsPackage, type Protocol, tenantMetadata } from "../support/clients.js";
import { codeOf, errorOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { breakerClient, fromNow } from "./helpers.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

describe(`SaveCircuitBreakerState / GetCircuitBreakerState on ${backendName}`, () => {
  it.each<Protocol>(["grpc", "connect"])("round-trips state, counts, times and policy over %s", async (protocol) => {
    const client = breakerClient(t.baseUrl, newTenant(), protocol);
    const openedAt = { seconds: 1_790_000_000n, nanos: 123_456_000 };
    const resetAt = { seconds: 1_790_000_060n, nanos: 0 };
    const policy = {
      failureThresholdType: FailureThresholdType.FAILURE_RATE,
      failureRateThreshold: 25.5,
      slidingWindowSize: 20,
      minimumCalls: 5,
      openDuration: { seconds: 30n, nanos: 0 },
      halfOpenTrialCalls: 2,
      slowCallDuration: { seconds: 2n, nanos: 500_000_000 },
    };
    const saved = await client.saveCircuitBreakerState({
      circuitBreaker: { agentKey: "agent-é", state: CircuitState.OPEN, failureCount: 7n, successCount: 3n, openedAt, resetAt, policy },
    });
    const b = saved.circuitBreaker!;
    expect(b).toMatchObject({ agentKey: "agent-é", state: CircuitState.OPEN, failureCount: 7n, successCount: 3n, openedAt, resetAt });
    expect(b.policy).toMatchObject(policy);
    expect(b.effectivePolicy).toMatchObject({ ...policy, consecutiveFailureThreshold: 5 });
    expect(b.etag).not.toBe("");
    expect((await client.getCircuitBreakerState({ agentKey: "agent-é" })).circuitBreaker).toEqual(b);
  });

  it("keeps the stored policy when a save leaves it unset, and an empty policy restores every default", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 2 } } });
    const kept = await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED } });
    expect(kept.circuitBreaker!.effectivePolicy!.consecutiveFailureThreshold).toBe(2);
    const cleared = await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED, policy: {} } });
    expect(cleared.circuitBreaker!.effectivePolicy!.consecutiveFailureThreshold).toBe(5);
  });

  it("saving OPEN without times opens now until now + open_duration", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const b = (await client.saveCircuitBreakerState({
      circuitBreaker: { agentKey: "a", state: CircuitState.OPEN, policy: { openDuration: { seconds: 90n } } },
    })).circuitBreaker!;
    expect(b.openedAt).toEqual(b.updateTime);
    expect(b.resetAt!.seconds - b.openedAt!.seconds).toBe(90n);
  });

  it("GetCircuitBreakerState of an unknown agent answers NOT_FOUND", async () => {
    expect(await codeOf(breakerClient(t.baseUrl, newTenant()).getCircuitBreakerState({ agentKey: "nope" }))).toBe(Code.NotFound);
  });

  it("a save with a stale etag answers ABORTED and changes nothing; the current etag succeeds", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const v1 = (await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED } })).circuitBreaker!;
    const v2 = (await client.recordCallOutcome({ agentKey: "a", success: false })).circuitBreaker!;
    expect(await codeOf(client.saveCircuitBreakerState({ etag: v1.etag, circuitBreaker: { agentKey: "a", state: CircuitState.FORCED_OPEN } }))).toBe(Code.Aborted);
    expect((await client.getCircuitBreakerState({ agentKey: "a" })).circuitBreaker).toEqual(v2);
    const v3 = await client.saveCircuitBreakerState({ etag: v2.etag, circuitBreaker: { agentKey: "a", state: CircuitState.FORCED_OPEN } });
    expect(v3.circuitBreaker!.state).toBe(CircuitState.FORCED_OPEN);
  });

  it("an etag for an agent without a breaker answers ABORTED and creates nothing", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    for (const etag of ["1", "2", "not-an-etag"]) {
      expect(await codeOf(client.saveCircuitBreakerState({ etag, circuitBreaker: { agentKey: "ghost", state: CircuitState.OPEN } }))).toBe(Code.Aborted);
    }
    expect(await codeOf(client.getCircuitBreakerState({ agentKey: "ghost" }))).toBe(Code.NotFound);
    expect((await client.listCircuitBreakerTransitions({ agentKey: "ghost" })).transitions).toEqual([]);
  });
});

describe(`ListCircuitBreakerStates on ${backendName}`, () => {
  it("filters by state and walks every page exactly once, in agent_key order", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const open: string[] = [];
    for (let i = 0; i < 23; i++) {
      const agentKey = `agent-${String(i).padStart(2, "0")}`;
      const state = i % 3 === 0 ? CircuitState.CLOSED : i % 3 === 1 ? CircuitState.OPEN : CircuitState.FORCED_OPEN;
      if (state !== CircuitState.CLOSED) open.push(agentKey);
      await client.saveCircuitBreakerState({ circuitBreaker: { agentKey, state } });
    }
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await client.listCircuitBreakerStates({ states: [CircuitState.OPEN, CircuitState.FORCED_OPEN], pageSize: 4, pageToken });
      expect(page.circuitBreakers.length).toBeLessThanOrEqual(4);
      seen.push(...page.circuitBreakers.map((b) => b.agentKey));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(seen).toEqual(open);
    expect((await client.listCircuitBreakerStates({ states: [CircuitState.CLOSED] })).circuitBreakers).toHaveLength(8);
  });

  it("a page token reused with other states answers INVALID_ARGUMENT", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    for (const agentKey of ["a", "b"]) await client.saveCircuitBreakerState({ circuitBreaker: { agentKey, state: CircuitState.OPEN } });
    const first = await client.listCircuitBreakerStates({ pageSize: 1 });
    const err = await errorOf(client.listCircuitBreakerStates({ pageSize: 1, pageToken: first.nextPageToken, states: [CircuitState.OPEN] }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("page_token");
  });
});

describe(`ResetCircuitBreaker, DeleteCircuitBreakerStates and transitions on ${backendName}`, () => {
  it("ResetCircuitBreaker closes a FORCED_OPEN breaker, zeroes it, keeps its policy and records RESET", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    await client.saveCircuitBreakerState({
      circuitBreaker: { agentKey: "a", state: CircuitState.FORCED_OPEN, failureCount: 9n, policy: { halfOpenTrialCalls: 7 } },
    });
    const b = (await client.resetCircuitBreaker({ agentKey: "a" })).circuitBreaker!;
    expect(b).toMatchObject({ state: CircuitState.CLOSED, failureCount: 0n, successCount: 0n });
    expect([b.openedAt, b.resetAt]).toEqual([undefined, undefined]);
    expect(b.policy!.halfOpenTrialCalls).toBe(7);
    const history = (await client.listCircuitBreakerTransitions({ agentKey: "a" })).transitions;
    expect(history.map((h) => [h.fromState, h.toState, h.reason])).toEqual([
      [CircuitState.FORCED_OPEN, CircuitState.CLOSED, TransitionReason.RESET],
      [CircuitState.CLOSED, CircuitState.FORCED_OPEN, TransitionReason.SAVED],
    ]);
    expect(history[0]!.failureCount).toBe(9n);
  });

  it("ResetCircuitBreaker of an unknown agent answers NOT_FOUND and creates nothing", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    expect(await codeOf(client.resetCircuitBreaker({ agentKey: "nope" }))).toBe(Code.NotFound);
    expect(await codeOf(client.getCircuitBreakerState({ agentKey: "nope" }))).toBe(Code.NotFound);
  });

  it("DeleteCircuitBreakerStates deletes old CLOSED breakers only; every other state survives, and transitions are kept", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const states = [CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.FORCED_OPEN, CircuitState.DISABLED];
    for (const state of states) await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: CircuitState[state], state } });
    await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "was-open", state: CircuitState.OPEN } });
    await client.resetCircuitBreaker({ agentKey: "was-open" });
    expect((await client.deleteCircuitBreakerStates({ updatedBefore: fromNow(-3600) })).deletedCount).toBe(0n);
    expect((await client.deleteCircuitBreakerStates({ updatedBefore: fromNow(3600) })).deletedCount).toBe(2n);
    const left = (await client.listCircuitBreakerStates({})).circuitBreakers.map((b) => b.state).sort();
    expect(left).toEqual(states.slice(1).sort());
    expect((await client.listCircuitBreakerTransitions({ agentKey: "was-open" })).transitions).toHaveLength(2);
  });

  it("ListCircuitBreakerTransitions pages newest first, each transition once", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    for (let i = 0; i < 5; i++) {
      await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.FORCED_OPEN } });
      await client.resetCircuitBreaker({ agentKey: "a" });
    }
    const ids: bigint[] = [];
    let pageToken = "";
    do {
      const page = await client.listCircuitBreakerTransitions({ agentKey: "a", pageSize: 3, pageToken });
      ids.push(...page.transitions.map((x) => x.transitionId));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(ids).toHaveLength(10);
    expect([...ids].sort((x, y) => (x < y ? 1 : -1))).toEqual(ids);
    expect(new Set(ids).size).toBe(10);
  });
});

describe(`RecordCallOutcome and AcquirePermission through the server on ${backendName}`, () => {
  it("opens after the threshold, refuses until reset_at, then grants the trials and closes on their success", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const policy = { consecutiveFailureThreshold: 2, halfOpenTrialCalls: 2, openDuration: { seconds: 0n, nanos: 300_000_000 } };
    await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED, policy } });
    expect((await client.recordCallOutcome({ agentKey: "a", success: false })).stateChanged).toBe(false);
    const opened = await client.recordCallOutcome({ agentKey: "a", success: false, duration: { seconds: 1n } });
    expect(opened).toMatchObject({ stateChanged: true, circuitBreaker: { state: CircuitState.OPEN } });
    expect(opened.transition).toMatchObject({ reason: TransitionReason.CONSECUTIVE_FAILURES, failureCount: 2n });
    const refused = await client.acquirePermission({ agentKey: "a" });
    expect(refused).toMatchObject({ permitted: false, retryTime: opened.circuitBreaker!.resetAt });
    await new Promise((resolve) => setTimeout(resolve, 400));
    const trial = await client.acquirePermission({ agentKey: "a" });
    expect(trial).toMatchObject({ permitted: true, circuitBreaker: { state: CircuitState.HALF_OPEN, trialCallsGranted: 1 } });
    expect(trial.transition?.reason).toBe(TransitionReason.OPEN_DURATION_ELAPSED);
    expect((await client.acquirePermission({ agentKey: "a" })).permitted).toBe(true);
    expect((await client.acquirePermission({ agentKey: "a" })).permitted).toBe(false);
    expect((await client.recordCallOutcome({ agentKey: "a", success: true })).stateChanged).toBe(false);
    const closed = await client.recordCallOutcome({ agentKey: "a", success: true });
    expect(closed).toMatchObject({ stateChanged: true, circuitBreaker: { state: CircuitState.CLOSED }, transition: { reason: TransitionReason.TRIAL_CALLS_SUCCEEDED } });
  });

  it("AcquirePermission of an agent without a breaker permits and stores nothing; FORCED_OPEN refuses until reset", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    expect(await client.acquirePermission({ agentKey: "new" })).toMatchObject({ permitted: true, circuitBreaker: { state: CircuitState.CLOSED, etag: "" } });
    expect(await codeOf(client.getCircuitBreakerState({ agentKey: "new" }))).toBe(Code.NotFound);
    await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "f", state: CircuitState.FORCED_OPEN } });
    for (let i = 0; i < 3; i++) await client.recordCallOutcome({ agentKey: "f", success: true });
    const refused = await client.acquirePermission({ agentKey: "f" });
    expect([refused.permitted, refused.retryTime, refused.circuitBreaker!.successCount]).toEqual([false, undefined, 0n]);
    await client.resetCircuitBreaker({ agentKey: "f" });
    expect((await client.acquirePermission({ agentKey: "f" })).permitted).toBe(true);
  });

  it("DISABLED counts nothing and always permits", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "d", state: CircuitState.DISABLED } });
    for (let i = 0; i < 8; i++) await client.recordCallOutcome({ agentKey: "d", success: false });
    expect(await client.acquirePermission({ agentKey: "d" })).toMatchObject({ permitted: true, circuitBreaker: { state: CircuitState.DISABLED, failureCount: 0n } });
  });
});

describe(`bad input on ${backendName}`, () => {
  const valid = { agentKey: "ok", state: CircuitState.CLOSED };
  const cases: [string, Record<string, unknown>, string][] = [
    ["missing agent_key", { ...valid, agentKey: "" }, "circuit_breaker.agent_key"],
    ["agent_key over 200 characters", { ...valid, agentKey: "x".repeat(201) }, "circuit_breaker.agent_key"],
    ["NUL byte in agent_key", { ...valid, agentKey: "a\0b" }, "circuit_breaker.agent_key"],
    ["unspecified state", { ...valid, state: CircuitState.UNSPECIFIED }, "circuit_breaker.state"],
    ["unknown state number", { ...valid, state: 42 }, "circuit_breaker.state"],
    ["negative failure_count", { ...valid, failureCount: -1n }, "circuit_breaker.failure_count"],
    ["reset_at on a CLOSED breaker", { ...valid, resetAt: { seconds: 1n } }, "circuit_breaker.reset_at"],
    ["opened_at on a FORCED_OPEN breaker", { ...valid, state: CircuitState.FORCED_OPEN, openedAt: { seconds: 1n } }, "circuit_breaker.opened_at"],
    ["timestamp out of range", { ...valid, state: CircuitState.OPEN, openedAt: { seconds: 253_402_300_800n } }, "circuit_breaker.opened_at"],
    ["failure rate above 100", { ...valid, policy: { failureRateThreshold: 100.5 } }, "circuit_breaker.policy.failure_rate_threshold"],
    ["minimum calls above the window", { ...valid, policy: { slidingWindowSize: 5, minimumCalls: 6 } }, "circuit_breaker.policy.minimum_calls"],
    ["open_duration below a millisecond", { ...valid, policy: { openDuration: { nanos: 1000 } } }, "circuit_breaker.policy.open_duration"],
    ["unknown threshold type", { ...valid, policy: { failureThresholdType: 9 } }, "circuit_breaker.policy.failure_threshold_type"],
    ["too many trial calls", { ...valid, policy: { halfOpenTrialCalls: 1001 } }, "circuit_breaker.policy.half_open_trial_calls"],
  ];

  it.each(cases)("SaveCircuitBreakerState with %s answers INVALID_ARGUMENT naming the field and writes nothing", async (_name, breaker, field) => {
    const client = breakerClient(t.baseUrl, newTenant());
    const err = await errorOf(client.saveCircuitBreakerState({ circuitBreaker: breaker as never }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(field);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toContain(field);
    expect((await client.listCircuitBreakerStates({})).circuitBreakers).toEqual([]);
  });

  it("every RPC naming an agent rejects an empty or oversized agent_key, writing nothing", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    for (const agentKey of ["", "k".repeat(201)]) {
      const calls = [
        client.getCircuitBreakerState({ agentKey }),
        client.resetCircuitBreaker({ agentKey }),
        client.recordCallOutcome({ agentKey, success: false }),
        client.acquirePermission({ agentKey }),
        client.listCircuitBreakerTransitions({ agentKey }),
      ];
      for (const call of calls) {
        const err = await errorOf(call);
        expect(err.code).toBe(Code.InvalidArgument);
        expect(err.rawMessage).toContain("agent_key");
      }
    }
    expect(await codeOf(client.recordCallOutcome({ agentKey: "a", success: true, duration: { seconds: -1n } }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.deleteCircuitBreakerStates({}))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.listCircuitBreakerStates({ states: [CircuitState.UNSPECIFIED] }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.listCircuitBreakerStates({ pageSize: -1 }))).toBe(Code.InvalidArgument);
    expect(await codeOf(client.listCircuitBreakerStates({ pageToken: "garbage" }))).toBe(Code.InvalidArgument);
    expect((await client.listCircuitBreakerStates({})).circuitBreakers).toEqual([]);
  });
});

describe(`tenant isolation of CircuitBreakerService on ${backendName}`, () => {
  it("two tenants may use the same agent key; neither sees, lists, counts against, resets, recovers or deletes the other's", async () => {
    const a = breakerClient(t.baseUrl, newTenant());
    const b = breakerClient(t.baseUrl, newTenant());
    await a.saveCircuitBreakerState({ circuitBreaker: { agentKey: "shared", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 1 } } });
    await a.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a-open", state: CircuitState.OPEN, resetAt: fromNow(-60) } });
    await a.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a-closed", state: CircuitState.CLOSED } });

    expect(await codeOf(b.getCircuitBreakerState({ agentKey: "a-open" }))).toBe(Code.NotFound);
    expect((await b.listCircuitBreakerStates({})).circuitBreakers).toEqual([]);
    expect((await b.listCircuitBreakerTransitions({ agentKey: "a-open" })).transitions).toEqual([]);
    expect(await codeOf(b.resetCircuitBreaker({ agentKey: "a-open" }))).toBe(Code.NotFound);
    expect((await b.recoverCircuitBreakers({})).circuitBreakers).toEqual([]);
    expect((await b.deleteCircuitBreakerStates({ updatedBefore: fromNow(3600) })).deletedCount).toBe(0n);
    expect(await codeOf(b.saveCircuitBreakerState({ etag: "2", circuitBreaker: { agentKey: "a-open", state: CircuitState.CLOSED } }))).toBe(Code.Aborted);
    // B's failure goes to B's own "shared" breaker (default threshold 5), not A's (threshold 1).
    expect((await b.recordCallOutcome({ agentKey: "shared", success: false })).stateChanged).toBe(false);
    expect((await a.getCircuitBreakerState({ agentKey: "shared" })).circuitBreaker!.failureCount).toBe(0n);
    expect((await b.acquirePermission({ agentKey: "a-open" })).permitted).toBe(true);

    expect((await a.getCircuitBreakerState({ agentKey: "a-open" })).circuitBreaker!.state).toBe(CircuitState.OPEN);
    expect((await a.listCircuitBreakerStates({})).circuitBreakers.map((x) => x.agentKey)).toEqual(["a-closed", "a-open", "shared"]);
    expect((await a.recoverCircuitBreakers({})).circuitBreakers.map((x) => x.agentKey)).toEqual(["a-open"]);
  });
});

describe(`wire compatibility on ${backendName}`, () => {
  it("a @grpc/grpc-js client loading the .proto records an outcome and reads the breaker back", async () => {
    const pkg = grpcJsPackage(["orchestration/state/v1/circuit_breaker_service.proto"]);
    const Service = (pkg.orchestration as grpc.GrpcObject).state as grpc.GrpcObject;
    const Ctor = (Service.v1 as grpc.GrpcObject).CircuitBreakerService as grpc.ServiceClientConstructor;
    const client = new Ctor(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure()) as unknown as Record<
      string,
      (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void
    >;
    const call = (method: string, req: object, tenant: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) =>
        client[method]!.call(client, req, tenantMetadata(tenant), (err, res) => (err ? reject(err) : resolve(res))),
      );
    const tenant = newTenant();
    const recorded = await call("RecordCallOutcome", { agent_key: "grpc-js", success: false, duration: { seconds: "2" } }, tenant);
    expect(recorded).toMatchObject({ state_changed: false, circuit_breaker: { agent_key: "grpc-js", state: "CIRCUIT_STATE_CLOSED", failure_count: "1" } });
    const got = await call("GetCircuitBreakerState", { agent_key: "grpc-js" }, tenant);
    expect(got).toMatchObject({ circuit_breaker: { consecutive_failures: "1", effective_policy: { half_open_trial_calls: 3 } } });
    await expect(call("GetCircuitBreakerState", { agent_key: "grpc-js" }, newTenant())).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    (client as unknown as grpc.Client).close();
  });
});
