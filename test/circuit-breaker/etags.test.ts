import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { backendName } from "../support/backend.js";
import { codeOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { breakerClient, fromNow } from "./helpers.js";

// Issue 11, section 4: a breaker's etag never repeats for the same agent, also
// across DeleteCircuitBreakerStates and a recreate, so an etag read before the
// delete never matches the new breaker (ABA).

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

describe(`breaker etags on ${backendName}`, () => {
  it("never repeat across delete and recreate: an old etag is ABORTED against the new breaker", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const seen = new Set<string>();
    let previous: string | undefined;
    for (let round = 0; round < 3; round++) {
      // The same writes each round: a per-row counter would give the same etags.
      const first = (await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED } })).circuitBreaker!;
      const second = (await client.recordCallOutcome({ agentKey: "a", success: true })).circuitBreaker!;
      for (const etag of [first.etag, second.etag]) {
        expect(seen.has(etag)).toBe(false);
        seen.add(etag);
      }
      if (previous !== undefined) {
        expect(
          await codeOf(client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.FORCED_OPEN }, etag: previous })),
        ).toBe(Code.Aborted);
      }
      previous = second.etag;
      const { deletedCount } = await client.deleteCircuitBreakerStates({ updatedBefore: fromNow(60) });
      expect(deletedCount).toBe(1n);
    }
  });

  it("grow with every write of the breaker, whichever RPC writes it", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const etags: bigint[] = [];
    const policy = { openDuration: { seconds: 0n, nanos: 1_000_000 }, consecutiveFailureThreshold: 1 };
    etags.push(BigInt((await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.CLOSED, policy } })).circuitBreaker!.etag));
    etags.push(BigInt((await client.recordCallOutcome({ agentKey: "a", success: false })).circuitBreaker!.etag));
    await new Promise((r) => setTimeout(r, 20));
    const recovered = await client.recoverCircuitBreakers({});
    expect(recovered.circuitBreakers.map((b) => b.agentKey)).toEqual(["a"]);
    etags.push(BigInt(recovered.circuitBreakers[0]!.etag));
    etags.push(BigInt((await client.acquirePermission({ agentKey: "a" })).circuitBreaker!.etag));
    etags.push(BigInt((await client.resetCircuitBreaker({ agentKey: "a" })).circuitBreaker!.etag));
    for (let i = 1; i < etags.length; i++) expect(etags[i]! > etags[i - 1]!).toBe(true);
    // The etag a save answers matches for the next save.
    const current = (await client.getCircuitBreakerState({ agentKey: "a" })).circuitBreaker!.etag;
    expect(current).toBe(String(etags.at(-1)));
    await client.saveCircuitBreakerState({ circuitBreaker: { agentKey: "a", state: CircuitState.DISABLED }, etag: current });
  });
});
