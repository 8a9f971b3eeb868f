import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { backendName } from "../support/backend.js";
import { invalidArgumentOf, violatedFields } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { breakerClient } from "./helpers.js";

// Issue 12, item 9: a breaker's times at the limits the contract documents
// (CircuitBreaker.opened_at, reset_at: from 1970-01-01 up to, not including,
// 2200-01-01). The server computes with microseconds in JS numbers, exact up
// to 2^53 (year 2255): past the limit a time is refused with INVALID_ARGUMENT
// naming the field, never answered with INTERNAL.

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

const END_OF_9999 = { seconds: 253_402_300_799n, nanos: 999_999_999 };
/** 2199-12-31T23:59:59.999999Z: the latest time a breaker stores. */
const LAST = { seconds: 7_258_118_399n, nanos: 999_999_000 };
const FIRST_AFTER = { seconds: 7_258_118_400n, nanos: 0 };

describe(`breaker times at their limits on ${backendName}`, () => {
  it("a reset_at of 9999-12-31T23:59:59.999999999 is INVALID_ARGUMENT naming circuit_breaker.reset_at", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const err = await invalidArgumentOf(
      client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.OPEN, resetAt: END_OF_9999 } }),
    );
    expect(violatedFields(err)).toEqual(["circuit_breaker.reset_at"]);
    expect(err.rawMessage).toContain("2200-01-01");
  });

  it("an opened_at past the limit, or before 1970, is INVALID_ARGUMENT naming circuit_breaker.opened_at", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    for (const openedAt of [END_OF_9999, FIRST_AFTER, { seconds: -1n, nanos: 999_999_999 }]) {
      const err = await invalidArgumentOf(
        client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.HALF_OPEN, openedAt } }),
      );
      expect(violatedFields(err)).toEqual(["circuit_breaker.opened_at"]);
    }
    // Nothing was stored.
    const list = await client.listCircuitBreakerStates({});
    expect(list.circuitBreakers).toEqual([]);
  });

  it("the last time within the limit is stored and read back exactly", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const saved = await client.saveCircuitBreakerState({
      circuitBreaker: { agentKey: "a", state: CircuitState.OPEN, openedAt: LAST, resetAt: LAST },
    });
    expect(saved.circuitBreaker!.resetAt).toMatchObject(LAST);
    expect(saved.circuitBreaker!.openedAt).toMatchObject(LAST);
    const got = await client.getCircuitBreakerState({ agentKey: "a" });
    expect(got.circuitBreaker!.resetAt).toMatchObject(LAST);
    // OPEN until then: no trial, and the retry time is that reset_at.
    const permission = await client.acquirePermission({ agentKey: "a" });
    expect(permission.permitted).toBe(false);
    expect(permission.retryTime).toMatchObject(LAST);
  });

  it("an opened_at at the limit without reset_at gets opened_at + open_duration, past 2200 but exact", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const saved = await client.saveCircuitBreakerState({
      circuitBreaker: { agentKey: "a", state: CircuitState.OPEN, openedAt: LAST, policy: { openDuration: { seconds: 30n * 24n * 3600n, nanos: 0 } } },
    });
    expect(saved.circuitBreaker!.resetAt).toMatchObject({ seconds: LAST.seconds + 30n * 24n * 3600n, nanos: LAST.nanos });
  });
});
