import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CircuitState,
  TransitionReason,
  type WatchCircuitBreakersResponse,
} from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { backendName } from "../support/backend.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { nextWithin } from "../support/streams.js";
import { breakerClient } from "./helpers.js";

// WatchCircuitBreakers across server replicas. On PostgreSQL the two servers
// have their own pools and LISTEN connections on one database, as two
// replicas do; on PGlite they share the one embedded database.

let a: TestServer;
let b: TestServer;
beforeAll(async () => {
  a = await startTestServer();
  b = backendName === "postgres" ? await startTestServer() : await startTestServer({}, a.knex);
});
afterAll(async () => {
  await b.close();
  await a.close();
});

type Event = WatchCircuitBreakersResponse["event"];

/** Opens a watch and returns its iterator, after reading up to and including `caught_up`. */
async function watch(server: TestServer, tenant: string, signal: AbortSignal, req: { agentKeys?: string[]; includeCurrentStates?: boolean } = {}) {
  const it = breakerClient(server.baseUrl, tenant).watchCircuitBreakers(req, { signal })[Symbol.asyncIterator]();
  const before: Event[] = [];
  for (;;) {
    const next = await nextWithin(it);
    if (next.done) throw new Error("the watch ended before caught_up");
    if (next.value.event.case === "caughtUp") return { it, before };
    before.push(next.value.event);
  }
}

async function nextEvent(it: AsyncIterator<WatchCircuitBreakersResponse>): Promise<Event> {
  const next = await nextWithin(it);
  if (next.done) throw new Error("the watch ended");
  return next.value.event;
}

describe(`WatchCircuitBreakers on ${backendName}`, () => {
  it("a transition made through one server is seen by a watch on the other", async () => {
    const tenant = newTenant();
    const stop = new AbortController();
    const { it: events } = await watch(b, tenant, stop.signal);
    const writer = breakerClient(a.baseUrl, tenant);
    await writer.saveCircuitBreakerState({ circuitBreaker: { agentKey: "agent", state: CircuitState.CLOSED, policy: { consecutiveFailureThreshold: 2 } } });
    await writer.recordCallOutcome({ agentKey: "agent", success: false });
    const opened = await writer.recordCallOutcome({ agentKey: "agent", success: false });
    const event = await nextEvent(events);
    expect(event.case).toBe("transition");
    expect(event.value).toEqual(opened.transition);
    expect(event.value).toMatchObject({ agentKey: "agent", fromState: CircuitState.CLOSED, toState: CircuitState.OPEN, reason: TransitionReason.CONSECUTIVE_FAILURES });
    stop.abort();
  });

  it("sends the current states first when asked, then only the watched agents' transitions of the caller's tenant", async () => {
    const tenant = newTenant();
    const other = newTenant();
    const writer = breakerClient(a.baseUrl, tenant);
    for (const agentKey of ["x", "y", "z"]) await writer.saveCircuitBreakerState({ circuitBreaker: { agentKey, state: CircuitState.CLOSED } });
    const stop = new AbortController();
    const { it: events, before } = await watch(b, tenant, stop.signal, { agentKeys: ["x", "z"], includeCurrentStates: true });
    expect(before.map((e) => (e.case === "currentState" ? e.value.agentKey : e.case))).toEqual(["x", "z"]);
    // Another tenant's transition on the same agent key, and an unwatched agent's, are not sent.
    await breakerClient(a.baseUrl, other).saveCircuitBreakerState({ circuitBreaker: { agentKey: "x", state: CircuitState.FORCED_OPEN } });
    await writer.saveCircuitBreakerState({ circuitBreaker: { agentKey: "y", state: CircuitState.FORCED_OPEN } });
    await writer.saveCircuitBreakerState({ circuitBreaker: { agentKey: "z", state: CircuitState.DISABLED } });
    const event = await nextEvent(events);
    expect(event.case === "transition" && [event.value.agentKey, event.value.toState]).toEqual(["z", CircuitState.DISABLED]);
    stop.abort();
  });

  it("a transition rolled back (an ABORTED save) is never sent", async () => {
    const tenant = newTenant();
    const writer = breakerClient(a.baseUrl, tenant);
    const stop = new AbortController();
    const { it: events } = await watch(b, tenant, stop.signal);
    const err = await writer.saveCircuitBreakerState({ etag: "999", circuitBreaker: { agentKey: "r", state: CircuitState.OPEN } }).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Aborted);
    await writer.saveCircuitBreakerState({ circuitBreaker: { agentKey: "r", state: CircuitState.DISABLED } });
    const event = await nextEvent(events);
    expect(event.case === "transition" && event.value.toState).toBe(CircuitState.DISABLED);
    stop.abort();
  });

  it("ends when the client cancels, and with UNAVAILABLE when its server shuts down", async () => {
    const tenant = newTenant();
    const stop = new AbortController();
    const { it: cancelled } = await watch(b, tenant, stop.signal);
    const pending = cancelled.next();
    stop.abort();
    expect(ConnectError.from(await pending.catch((e: unknown) => e)).code).toBe(Code.Canceled);

    const c = backendName === "postgres" ? await startTestServer() : await startTestServer({}, a.knex);
    const { it: open } = await watch(c, tenant, new AbortController().signal);
    const ended = open.next().catch((e: unknown) => e);
    await c.close();
    expect(ConnectError.from(await ended).code).toBe(Code.Unavailable);
    // The other servers keep serving their watches.
    const again = new AbortController();
    const { it: still } = await watch(b, tenant, again.signal);
    await breakerClient(a.baseUrl, tenant).saveCircuitBreakerState({ circuitBreaker: { agentKey: "after", state: CircuitState.FORCED_OPEN } });
    expect((await nextEvent(still)).case).toBe("transition");
    again.abort();
  });

  it("rejects too many or malformed agent keys with INVALID_ARGUMENT", async () => {
    const client = breakerClient(b.baseUrl, newTenant());
    for (const agentKeys of [Array.from({ length: 101 }, (_, i) => `k${i}`), [""]]) {
      const it = client.watchCircuitBreakers({ agentKeys })[Symbol.asyncIterator]();
      expect(ConnectError.from(await it.next().catch((e: unknown) => e)).code).toBe(Code.InvalidArgument);
    }
  });
});
