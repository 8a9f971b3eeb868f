import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { backendName } from "../support/backend.js";
import { codeOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { breakerClient } from "./helpers.js";

// Issue 11, section 3: RecordCallOutcome retried with the same request_id
// counts once, also when the retries run at the same time.

let t: TestServer;
beforeAll(async () => {
  // Room for 1,000 calls of one tenant at once (the per-tenant queue).
  t = await startTestServer({ tenantQueueMax: 2_000 });
});
afterAll(async () => {
  await t.close();
});

describe(`RecordCallOutcome with request_id on ${backendName}`, () => {
  it("1,000 concurrent retries with the same request_id count once and all get the first answer", async () => {
    const tenant = newTenant();
    const clients = Array.from({ length: 8 }, (_, i) => breakerClient(t.baseUrl, tenant, i % 2 === 0 ? "grpc" : "connect"));
    // Two failures in a row open it: a retry counted twice would open it.
    await clients[0]!.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 2 } } });
    const requestId = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) => clients[i % 8]!.recordCallOutcome({ agentKey: "a", success: false, requestId })),
    );
    for (const a of answers) expect(a).toEqual(answers[0]);
    expect(answers[0]).toMatchObject({ counted: true, stateChanged: false, circuitBreaker: { failureCount: 1n, consecutiveFailures: 1n } });
    const stored = (await clients[0]!.getCircuitBreakerState({ agentKey: "a" })).circuitBreaker!;
    expect(stored).toMatchObject({ state: CircuitState.CLOSED, failureCount: 1n, etag: answers[0]!.circuitBreaker!.etag });

    // Another id counts (and opens it); reusing an id for another outcome is ALREADY_EXISTS.
    expect(await codeOf(clients[0]!.recordCallOutcome({ agentKey: "a", success: true, requestId }))).toBe(Code.AlreadyExists);
    const second = await clients[0]!.recordCallOutcome({ agentKey: "a", success: false, requestId: randomUUID() });
    expect(second).toMatchObject({ stateChanged: true, circuitBreaker: { state: CircuitState.OPEN } });
    const transitions = await clients[0]!.listCircuitBreakerTransitions({ agentKey: "a" });
    expect(transitions.transitions.map((x) => CircuitState[x.toState])).toEqual(["OPEN"]);
  });
});
