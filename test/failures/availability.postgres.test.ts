// PostgreSQL only (vitest.config.ts collects *.postgres.test.ts files only
// when TEST_DATABASE_URL is set): a TCP proxy (support/tcp-proxy.ts) between
// the server and TEST_DATABASE_URL is cut, stalled and restored, so the
// database is unreachable at startup, lost mid-flight, or partitioned.
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { workflowClient } from "../support/clients.js";
import { timedCode } from "../support/errors.js";
import { newTenant } from "../support/server.js";
import { startAvailableServer, waitFor } from "./support/available-server.js";
import { cleanUpAfterEach, execution, MIGRATE_FAILED, proxiedPostgres, running, WORKFLOW } from "./support/availability.js";

cleanUpAfterEach();

describe("database availability on PostgreSQL through a TCP proxy", () => {
  it("unreachable at startup, then back: the server migrates, health turns SERVING and calls work, by itself", async () => {
    const { proxy, knex } = await proxiedPostgres(false);
    const s = await startAvailableServer(knex);
    running.push(s);
    const client = workflowClient(s.baseUrl, newTenant());
    expect(await s.health()).toBe(ServingStatus.NOT_SERVING);
    expect((await timedCode(client.saveWorkflowExecution(execution("e")))).code).toBe(Code.Unavailable);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(s.logs.filter((l) => l.msg === MIGRATE_FAILED).length).toBeGreaterThanOrEqual(2);

    await proxy.restore();
    await waitFor(() => s.health(), ServingStatus.SERVING, 3_000);
    expect(await s.health(WORKFLOW)).toBe(ServingStatus.SERVING);
    const saved = await client.saveWorkflowExecution(execution("e"));
    expect(saved.execution?.executionId).toBe("e");
    expect(s.logs.some((l) => l.msg === "database migrated after retrying; health is SERVING")).toBe(true);
  });

  it("lost mid-flight: the call in flight and new calls answer UNAVAILABLE promptly, health turns NOT_SERVING, the process survives idle connections dying, and it all recovers when the database is back", async () => {
    const { proxy, knex } = await proxiedPostgres(true);
    const s = await startAvailableServer(knex, { probeIntervalMs: 5_000 }); // only errors trigger an early probe
    running.push(s);
    const tenant = newTenant();
    const client = workflowClient(s.baseUrl, tenant);
    // Fill the pool: these connections are idle when the database goes away.
    await Promise.all([0, 1, 2, 3].map((i) => client.saveWorkflowExecution(execution(`before-${i}`, i))));
    expect(proxy.connections).toBeGreaterThanOrEqual(2);

    proxy.stall();
    const inFlight = timedCode(client.saveWorkflowExecution(execution("in-flight")));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await proxy.cut();
    const lost = await inFlight;
    expect(lost.code).toBe(Code.Unavailable);
    expect(lost.ms).toBeLessThan(2_000);

    const refused = await timedCode(client.getWorkflowExecution({ executionId: "before-0" }));
    expect(refused).toMatchObject({ code: Code.Unavailable });
    expect(refused.ms).toBeLessThan(1_000);
    // Long before the next periodic probe: the failed calls triggered one.
    await waitFor(() => s.health(), ServingStatus.NOT_SERVING, 1_500);

    await proxy.restore();
    const got = await client.getWorkflowExecution({ executionId: "before-3" }); // works before any probe says so
    expect(got.execution?.context).toEqual({ step: 3 });
    // Well before the next periodic probe (5 s): the successful call triggered one.
    await waitFor(() => s.health(), ServingStatus.SERVING, 1_500);
    await client.saveWorkflowExecution(execution("after"));
  });

  it("a partition (connections open, no bytes flow): a call with a deadline ends at its deadline, health turns NOT_SERVING, and both recover when the network heals", async () => {
    const { proxy, knex } = await proxiedPostgres(true);
    const s = await startAvailableServer(knex, { probeIntervalMs: 200 });
    running.push(s);
    const client = workflowClient(s.baseUrl, newTenant());
    await client.saveWorkflowExecution(execution("e"));

    proxy.stall();
    const call = await timedCode(client.saveWorkflowExecution(execution("e", 1), { timeoutMs: 1_000 }));
    expect(call.code).toBe(Code.DeadlineExceeded);
    expect(call.ms).toBeLessThan(1_500);
    await waitFor(() => s.health(), ServingStatus.NOT_SERVING, 2_000);

    proxy.unstall();
    await waitFor(() => s.health(), ServingStatus.SERVING, 3_000);
    const saved = await client.saveWorkflowExecution(execution("e", 2), { timeoutMs: 5_000 });
    expect(saved.execution?.context).toEqual({ step: 2 });
  });
});
