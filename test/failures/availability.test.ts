// The database is unreachable or lost: the server keeps running, health says
// NOT_SERVING, calls answer UNAVAILABLE (retryable), nothing hangs past its
// deadline, and everything recovers by itself (src/db/availability.ts).
// The PostgreSQL-only tests put a TCP proxy (test/failures/support/tcp-proxy.ts)
// between the server and TEST_DATABASE_URL and cut, stall and restore it.
import type { PGlite } from "@electric-sql/pglite";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createDatabase } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";
import { backendName } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { newTenant } from "../support/server.js";
import { type AvailableServer, startAvailableServer, timedCode, waitFor } from "./support/available-server.js";
import { databaseTarget, proxiedUrl, TcpProxy } from "./support/tcp-proxy.js";

const WORKFLOW = "orchestration.state.v1.WorkflowStateService";
const MIGRATE_FAILED = "could not migrate the database; retrying (health is NOT_SERVING)";
const pgUrl = process.env.TEST_DATABASE_URL;

const running: AvailableServer[] = [];
const proxies: TcpProxy[] = [];
afterEach(async () => {
  for (const proxy of proxies.splice(0)) await proxy.cut();
  for (const s of running.splice(0)) await s.close();
});

function execution(executionId: string, step = 0) {
  return { execution: { executionId, workflowName: "wf", status: WorkflowStatus.RUNNING, context: { step } } };
}

/** A PostgreSQL server on 127.0.0.1 behind a proxy, with a knex through it; the proxy starts up or down. */
async function proxiedPostgres(up: boolean) {
  const proxy = new TcpProxy(databaseTarget(pgUrl!));
  proxies.push(proxy);
  const port = up ? await proxy.listen() : await proxy.reservePort();
  const knex = createDatabase({ databaseUrl: proxiedUrl(pgUrl!, port), poolMax: 4, logger: silentLogger });
  return { proxy, knex };
}

describe("database availability (no database needed: a port nobody listens on)", () => {
  it("an unreachable database at startup: the server starts, health is NOT_SERVING, calls answer UNAVAILABLE, and migration is retried with exponential backoff capped at retryMaxMs", async () => {
    const closed = new TcpProxy({ host: "127.0.0.1", port: 1 });
    const port = await closed.reservePort();
    const knex = createDatabase({ databaseUrl: `postgres://postgres@127.0.0.1:${port}/none`, logger: silentLogger });
    const s = await startAvailableServer(knex, { retryInitialMs: 50, retryMaxMs: 400 });
    running.push(s);
    expect(s.database.isMigrated).toBe(false);

    expect(await s.health()).toBe(ServingStatus.NOT_SERVING);
    expect(await s.health(WORKFLOW)).toBe(ServingStatus.NOT_SERVING);
    const call = await timedCode(workflowClient(s.baseUrl, newTenant()).saveWorkflowExecution(execution("e")));
    expect(call.code).toBe(Code.Unavailable);
    expect(call.ms).toBeLessThan(1_000);

    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const attempts = s.logs.filter((l) => l.msg === MIGRATE_FAILED);
    expect(attempts.length).toBeGreaterThanOrEqual(5);
    attempts.forEach((line, i) => {
      // 50-100% of min(400, 50 * 2^i): grows, then stays at the cap.
      const ceiling = Math.min(400, 50 * 2 ** i);
      expect(line).toMatchObject({ level: "error", attempt: i + 1, unavailable: true });
      expect(line.retryInMs).toBeGreaterThanOrEqual(ceiling / 2);
      expect(line.retryInMs).toBeLessThanOrEqual(ceiling);
    });
    // Still not serving, still retrying.
    expect(await s.health()).toBe(ServingStatus.NOT_SERVING);
  });
});

describe(`database availability on ${backendName}`, () => {
  it("until the migrations have run, calls answer UNAVAILABLE (not INTERNAL) and health is NOT_SERVING; once they have, health is SERVING and calls work", async () => {
    // A fresh, unmigrated database: PGlite in memory, or a PostgreSQL database
    // that was migrated by other tests (the gate must still hold until start()).
    const knex = pgUrl
      ? createDatabase({ databaseUrl: pgUrl, poolMax: 4, logger: silentLogger })
      : createDatabase({ dataDir: "memory://", logger: silentLogger });
    const s = await startAvailableServer(knex, { start: false });
    running.push(s);
    const client = workflowClient(s.baseUrl, newTenant());
    expect((await timedCode(client.saveWorkflowExecution(execution("e")))).code).toBe(Code.Unavailable);
    expect(await s.health()).toBe(ServingStatus.NOT_SERVING);

    expect(await s.database.start()).toBe(true);
    expect(await s.health()).toBe(ServingStatus.SERVING);
    expect(await s.health(WORKFLOW)).toBe(ServingStatus.SERVING);
    const saved = await client.saveWorkflowExecution(execution("e"));
    expect(saved.execution?.executionId).toBe("e");
  });

  it("after shutdown begins, a database that is available does not turn health back to SERVING", async () => {
    const knex = pgUrl
      ? createDatabase({ databaseUrl: pgUrl, poolMax: 4, logger: silentLogger })
      : createDatabase({ dataDir: "memory://", logger: silentLogger });
    const s = await startAvailableServer(knex, { probeIntervalMs: 100 });
    expect(await s.health()).toBe(ServingStatus.SERVING);
    const shutdown = s.server.shutdown();
    expect(s.server.health.impl.check!({ service: "" } as never, undefined as never)).toEqual({ status: ServingStatus.NOT_SERVING });
    await new Promise((resolve) => setTimeout(resolve, 300)); // several probes succeed meanwhile
    expect(s.server.health.impl.check!({ service: "" } as never, undefined as never)).toEqual({ status: ServingStatus.NOT_SERVING });
    await shutdown;
    await s.database.stop();
    await knex.destroy();
  });
});

describe.runIf(backendName === "pglite")("database availability on PGlite only", () => {
  it("PGlite only: a database lost while running (the PGlite instance closed) turns health NOT_SERVING and calls answer UNAVAILABLE", async () => {
    const knex = createDatabase({ dataDir: "memory://", logger: silentLogger });
    const s = await startAvailableServer(knex, { probeIntervalMs: 100 });
    running.push(s);
    const client = workflowClient(s.baseUrl, newTenant());
    await client.saveWorkflowExecution(execution("e"));
    expect(await s.health()).toBe(ServingStatus.SERVING);

    await (knex.client as { pglite: PGlite }).pglite.close();
    expect((await timedCode(client.getWorkflowExecution({ executionId: "e" }))).code).toBe(Code.Unavailable);
    await waitFor(() => s.health(), ServingStatus.NOT_SERVING, 2_000);
    expect(s.logs.some((l) => l.msg === "database unreachable: health is NOT_SERVING, calls answer UNAVAILABLE")).toBe(true);
  });
});

describe.runIf(pgUrl !== undefined)("database availability through a TCP proxy (PostgreSQL only)", () => {
  it("PostgreSQL only: unreachable at startup, then back: the server migrates, health turns SERVING and calls work, by itself", async () => {
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

  it("PostgreSQL only: lost mid-flight: the call in flight and new calls answer UNAVAILABLE promptly, health turns NOT_SERVING, the process survives idle connections dying, and it all recovers when the database is back", async () => {
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

  it("PostgreSQL only: a partition (connections open, no bytes flow): a call with a deadline ends at its deadline, health turns NOT_SERVING, and both recover when the network heals", async () => {
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
