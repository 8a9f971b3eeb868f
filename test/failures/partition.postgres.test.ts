// Issue 12, item 3: after a network partition the server stayed degraded
// while health said SERVING. The pool had no bound on how long a connection
// may wait for an answer, so the connections whose peer vanished hung with
// their calls for good: after healing, throughput stayed about 10x lower. The
// LISTEN connection hung the same way: WatchCircuitBreakers delivered nothing
// and raised no error.
//
// PostgreSQL only: a TCP proxy on loopback (support/tcp-proxy.ts) between the
// server and TEST_DATABASE_URL stalls (connections stay open, no byte flows),
// then heals as a real network does for peers that vanished: new connections
// work, the connections open during the stall stay silent for good. TCP
// keepalive cannot see this partition (the proxy's kernel answers it), so what
// finds the dead connections is the bound on waiting for an answer, set small
// here (DATABASE_STATEMENT_TIMEOUT_MS: 1 s, so 2 s without any answer).
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { CircuitState, type WatchCircuitBreakersResponse } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { breakerClient } from "../circuit-breaker/helpers.js";
import { workflowClient } from "../support/clients.js";
import { newTenant } from "../support/server.js";
import { nextWithin } from "../support/streams.js";
import { startAvailableServer, waitFor } from "./support/available-server.js";
import { cleanUpAfterEach, execution, proxiedPostgres, running } from "./support/availability.js";

cleanUpAfterEach();

const STATEMENT_TIMEOUT_MS = 1_000;
const PROBE_INTERVAL_MS = 500;
const WORKERS = 8;

/** Saves from WORKERS concurrent callers for `ms`: how many answered OK, and the codes of the others. */
async function load(baseUrl: string, ms: number): Promise<{ ok: number; failed: Code[] }> {
  const client = workflowClient(baseUrl, newTenant());
  const end = Date.now() + ms;
  let ok = 0;
  const failed: Code[] = [];
  let n = 0;
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (Date.now() < end) {
        try {
          await client.saveWorkflowExecution(execution(`e-${n++}`), { timeoutMs: 1_500 });
          ok++;
        } catch (err) {
          failed.push(ConnectError.from(err).code);
        }
      }
    }),
  );
  return { ok, failed };
}

/**
 * Reads a watch until it ends or delivers a transition of `agentKey` to
 * `state`: "unavailable" if it ended with UNAVAILABLE, "delivered" for the
 * transition, or what else happened ("silence" when nothing did for `ms`).
 */
async function watchOutcome(events: AsyncIterator<WatchCircuitBreakersResponse>, agentKey: string, state: CircuitState, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return "silence";
    let next: IteratorResult<WatchCircuitBreakersResponse>;
    try {
      next = await nextWithin(events, left);
    } catch (err) {
      if (err instanceof ConnectError) return err.code === Code.Unavailable ? "unavailable" : `ended with ${Code[err.code]}`;
      return "silence";
    }
    if (next.done) return "ended with OK";
    const event = next.value.event;
    if (event.case === "transition" && event.value.agentKey === agentKey && event.value.toState === state) return "delivered";
  }
}

describe("a partition on PostgreSQL, through a TCP proxy that stalls and heals", () => {
  it("after the stalled proxy heals, throughput returns to its pre-fault level within 30 s, health says NOT_SERVING during the partition, and a watch opened before ends with UNAVAILABLE or delivers the transitions made after healing", async () => {
    const { proxy, knex } = await proxiedPostgres(true, { statementTimeoutMs: STATEMENT_TIMEOUT_MS });
    const s = await startAvailableServer(knex, { probeIntervalMs: PROBE_INTERVAL_MS, config: { databaseProbeIntervalMs: PROBE_INTERVAL_MS } });
    running.push(s);

    await load(s.baseUrl, 500); // fills the pool
    const before = await load(s.baseUrl, 1_000);
    expect(before.ok).toBeGreaterThan(20);

    const tenant = newTenant();
    const stopWatch = new AbortController();
    const events = breakerClient(s.baseUrl, tenant).watchCircuitBreakers({}, { signal: stopWatch.signal })[Symbol.asyncIterator]();
    expect((await nextWithin(events)).value?.event.case).toBe("caughtUp");

    try {
      proxy.stall();
      const during = await load(s.baseUrl, 1_000);
      expect(during.ok).toBe(0);
      await waitFor(() => s.health(), ServingStatus.NOT_SERVING, 5_000);

      proxy.heal();
      const healedAt = Date.now();
      // The watch: either told (UNAVAILABLE, so its client re-opens it with
      // current states), or it delivers what is changed from now on.
      const watched = watchOutcome(events, "agent", CircuitState.FORCED_OPEN, 30_000);
      const writer = breakerClient(s.baseUrl, tenant);
      const changed = (async () => {
        for (;;) {
          try {
            await writer.saveCircuitBreakerState({ circuitBreaker: { agentKey: "agent", state: CircuitState.FORCED_OPEN } }, { timeoutMs: 2_000 });
            return;
          } catch {
            if (Date.now() - healedAt > 30_000) return;
          }
        }
      })();

      // Throughput back to at least 60% of before's (a noisy machine), in a
      // window of 1 s ending within 30 s of healing.
      let recovered: { ok: number; failed: Code[] } | undefined;
      while (Date.now() - healedAt < 28_000) {
        const window = await load(s.baseUrl, 1_000);
        if (window.ok >= before.ok * 0.6) {
          recovered = window;
          break;
        }
      }
      const recoveredMs = Date.now() - healedAt;
      expect(recovered, `throughput still below 60% of ${before.ok} per second after ${recoveredMs} ms`).toBeDefined();
      expect(recoveredMs).toBeLessThanOrEqual(30_000);
      await waitFor(() => s.health(), ServingStatus.SERVING, 5_000);

      await changed;
      expect(await watched).toMatch(/^(unavailable|delivered)$/);
    } finally {
      stopWatch.abort();
    }
  });
});
