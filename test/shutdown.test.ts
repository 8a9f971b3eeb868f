// Graceful shutdown (what SIGTERM/SIGINT run, through AppServer.shutdown):
// health turns NOT_SERVING, new calls are refused after the drain delay,
// in-flight unary calls finish within the grace period, open streams end with
// UNAVAILABLE. Each test runs its own server, since shutdown is final; they
// share one migrated database, which shutdown leaves open (main.ts closes it).
// test/main-process.test.ts covers the signals, the exit code and the database.
import * as net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/health/v1/health_pb.js";
import { WorkflowStatus } from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import type { Config } from "../src/config.js";
import { backendName, createTestDatabase } from "./support/backend.js";
import { connectClient, workflowClient } from "./support/clients.js";
import { newTenant, startTestServer, type TestServer } from "./support/server.js";
import { nextWithin } from "./support/streams.js";

const WORKFLOW = "orchestration.state.v1.WorkflowStateService";

let knex: Knex;
beforeAll(async () => {
  knex = await createTestDatabase();
});
afterAll(async () => {
  await knex.destroy();
});

// Every server a test started, shut down once (by the test or, if it failed
// part way, after it), so that no server outlives its test.
const stops = new Map<TestServer, Promise<void>>();
function shutdown(t: TestServer): Promise<void> {
  let stop = stops.get(t);
  if (stop === undefined) {
    stop = t.server.shutdown();
    stops.set(t, stop);
  }
  return stop;
}
const servers: TestServer[] = [];
async function start(overrides: Partial<Config> = {}): Promise<TestServer> {
  const t = await startTestServer(overrides, knex);
  servers.push(t);
  return t;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map(shutdown));
  stops.clear();
});

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  const outcome = await promise.then(
    (value) => ({ value }),
    (err: unknown) => ({ err }),
  );
  if (!("err" in outcome)) throw new Error(`expected the call to fail, it answered ${JSON.stringify(outcome.value, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
  return ConnectError.from(outcome.err);
}

/** Whether a TCP connection to the port is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A valid incomplete execution. */
function execution(executionId: string, status = WorkflowStatus.RUNNING) {
  return { executionId, workflowName: "shutdown-test", status, context: { step: "fetch" } };
}

/**
 * Inserts `n` RUNNING executions of `tenant` in one statement, `exec-000001`
 * first (started_at one millisecond apart), each with a ~1 KB context.
 */
async function insertIncomplete(tenant: string, n: number): Promise<void> {
  await knex.raw(
    `INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, context, started_at)
     SELECT ?::uuid, 'exec-' || lpad(i::text, 6, '0'), 'bulk', 'RUNNING',
            jsonb_build_object('orderId', i, 'note', repeat('x', 1000)),
            timestamptz '2026-11-26T00:00:00Z' + i * interval '1 millisecond'
     FROM generate_series(1, ?::int) AS i`,
    [tenant, n],
  );
}

describe(`graceful shutdown on ${backendName}`, () => {
  it("health answers SERVING after listen and NOT_SERVING from the start of shutdown, while calls are still taken during the drain delay", async () => {
    const t = await start({ shutdownDrainDelayMs: 500 });
    const health = connectClient(Health, t.baseUrl, undefined);
    const client = workflowClient(t.baseUrl, newTenant());
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await health.check({ service: WORKFLOW })).status).toBe(ServingStatus.SERVING);

    const started = Date.now();
    const stopping = shutdown(t);
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
    expect((await health.check({ service: WORKFLOW })).status).toBe(ServingStatus.NOT_SERVING);
    // Load balancers move away during the delay; a call that still arrives is served.
    expect(Date.now() - started).toBeLessThan(500);
    const saved = await client.saveWorkflowExecution({ execution: execution("during-drain-delay") });
    expect(saved.execution?.executionId).toBe("during-drain-delay");

    await stopping;
  });

  it("a Watch opened before shutdown receives SERVING, then NOT_SERVING, then ends with UNAVAILABLE after the drain delay", async () => {
    const t = await start({ shutdownDrainDelayMs: 500 });
    const health = connectClient(Health, t.baseUrl, undefined);
    const watch = health.watch({ service: "" })[Symbol.asyncIterator]();
    expect((await nextWithin(watch)).value?.status).toBe(ServingStatus.SERVING);

    const started = Date.now();
    const stopping = shutdown(t);
    expect((await nextWithin(watch)).value?.status).toBe(ServingStatus.NOT_SERVING);
    const err = await rejection(nextWithin(watch));
    expect(err.code).toBe(Code.Unavailable);
    // It stays open (and NOT_SERVING) for the whole delay, so watchers see the change first.
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(t.server.health.watchCount()).toBe(0);

    await stopping;
  });

  it("after shutdown, a new call fails with UNAVAILABLE (connection refused), which clients retry, not INTERNAL", async () => {
    const t = await start();
    const client = workflowClient(t.baseUrl, newTenant());
    await client.saveWorkflowExecution({ execution: execution("before") }); // the client holds an open connection

    await shutdown(t);
    expect(await accepts(t.port)).toBe(false);
    for (const c of [client, workflowClient(t.baseUrl, newTenant())]) {
      const err = await rejection(c.getWorkflowExecution({ executionId: "before" }));
      expect(err.code).toBe(Code.Unavailable);
    }
  });

  it("an in-flight unary call started before shutdown completes; calls made after the drain delay answer UNAVAILABLE", async () => {
    const t = await start({ shutdownDrainDelayMs: 200, shutdownGraceMs: 10_000 });
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    await client.saveWorkflowExecution({ execution: execution("held") });

    // Make the save slow: hold the row with FOR UPDATE in a transaction of our
    // own. On PostgreSQL the save's upsert waits for the row lock; on PGlite,
    // which has exactly one connection, it waits for the connection.
    const trx = await knex.transaction();
    let inFlight: Promise<unknown> | undefined;
    try {
      await trx.raw("SELECT 1 FROM workflow_executions WHERE tenant_id = ? AND execution_id = ? FOR UPDATE", [tenant, "held"]);
      inFlight = client.saveWorkflowExecution({ execution: execution("held", WorkflowStatus.COMPLETED) });
      let settledAt: number | undefined;
      void inFlight.then(
        () => (settledAt = Date.now()),
        () => (settledAt = Date.now()),
      );
      await vi.waitFor(async () => expect(await saveIsWaiting(trx)).toBe(true), { timeout: 5_000, interval: 20 });

      let stoppedAt: number | undefined;
      const stopping = shutdown(t).then(() => (stoppedAt = Date.now()));
      // The port closes once the drain delay is over; at the same moment the
      // server sends GOAWAY on the open connection. Give the client a moment
      // to read it. (A call that crosses the GOAWAY is refused with
      // RST_STREAM REFUSED_STREAM, which @connectrpc/connect-node 2.1.2
      // reports as INTERNAL rather than UNAVAILABLE: a known problem, not
      // what this test is about.)
      await vi.waitFor(async () => expect(await accepts(t.port)).toBe(false), { timeout: 5_000, interval: 20 });
      await new Promise((resolve) => setTimeout(resolve, 100));

      // New calls now answer UNAVAILABLE (connection refused), from a client
      // that had a connection as from a new one: a condition clients retry.
      for (const c of [client, workflowClient(t.baseUrl, tenant)]) {
        const err = await rejection(c.getWorkflowExecution({ executionId: "held" }));
        expect(err.code).toBe(Code.Unavailable);
        expect(err.message).toContain("ECONNREFUSED");
      }
      // ...while the call started before is still running, and holds up the shutdown.
      expect(settledAt).toBeUndefined();
      expect(stoppedAt).toBeUndefined();

      await trx.commit();
      const res = (await inFlight) as Awaited<ReturnType<typeof client.saveWorkflowExecution>>;
      expect(res.execution?.status).toBe(WorkflowStatus.COMPLETED);
      await stopping;
      // The call finished before shutdown returned (after which main.ts closes the database).
      expect(settledAt).toBeLessThanOrEqual(stoppedAt!);
    } finally {
      if (!trx.isCompleted()) await trx.rollback();
      await inFlight?.catch(() => {});
    }
    const [row] = await knex("workflow_executions").where({ tenant_id: tenant, execution_id: "held" }).select("status");
    expect(row?.status).toBe("COMPLETED");
    expect(t.logs.some((l) => l.msg === "grace period over; cancelling the calls still running")).toBe(false);
  });

  it("an open StreamIncompleteWorkflows stream ends with UNAVAILABLE when the server shuts down", async () => {
    const rows = 2_000;
    const t = await start({ streamBatchSize: 5, shutdownGraceMs: 10_000 });
    const tenant = newTenant();
    await insertIncomplete(tenant, rows);
    const client = workflowClient(t.baseUrl, tenant);
    const stream = client.streamIncompleteWorkflows({})[Symbol.asyncIterator]();

    const received: string[] = [];
    for (let i = 0; i < 10; i++) received.push((await nextWithin(stream)).value.execution.executionId);
    // The client reads slowly: the server stays well behind the end of the table.
    const started = Date.now();
    const stopping = shutdown(t);
    let err: ConnectError | undefined;
    for (;;) {
      try {
        const next = await nextWithin(stream);
        if (next.done) break;
        received.push(next.value.execution!.executionId);
        await new Promise((resolve) => setTimeout(resolve, 1));
      } catch (e) {
        err = ConnectError.from(e);
        break;
      }
    }
    expect(err?.code).toBe(Code.Unavailable);
    expect(received.length).toBeLessThan(rows);
    // What was received is the FIFO prefix, each once.
    expect(received).toEqual(Array.from({ length: received.length }, (_, i) => `exec-${String(i + 1).padStart(6, "0")}`));
    await stopping;
    // Ended by the shutdown, not cut when the grace period ran out.
    expect(Date.now() - started).toBeLessThan(5_000);
    const line = t.logs.find((l) => l.msg === "rpc" && l.procedure === `${WORKFLOW}/StreamIncompleteWorkflows` && l.tenant === tenant);
    expect(line).toMatchObject({ code: "UNAVAILABLE" });
    expect(line?.messages).toBeLessThan(rows);
  });
});

/** Whether the server's save is blocked behind `trx` (a row lock on PostgreSQL, the one connection on PGlite). */
async function saveIsWaiting(trx: Knex.Transaction): Promise<boolean> {
  if (backendName === "postgres") {
    // pg_locks, not pg_stat_activity: the latter is a snapshot taken once per transaction.
    const { rows } = await trx.raw<{ rows: { n: number }[] }>(
      "SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))",
    );
    return rows[0]!.n > 0;
  }
  return (knex.client as { pool: { numPendingAcquires(): number } }).pool.numPendingAcquires() > 0;
}
