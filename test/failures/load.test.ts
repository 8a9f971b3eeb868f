// 64 concurrent clients, each on its own HTTP/2 connection, run a mixed
// workload across the four services against a server in a separate process
// (test/failures/support/load-server.ts) for a bounded time. No call fails;
// afterwards no HTTP/2 session, call or database connection is left open
// (PostgreSQL: the server's backends in pg_stat_activity stay within its
// pool); and memory after a full GC at the end is within a bound of memory
// after the warm-up. A correctness test, not a benchmark: bench/ measures speed.
import { randomUUID } from "node:crypto";
import * as fs from "node:fs/promises";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";
import { backendName, createPgliteDataDir, postgresEnv } from "../support/backend.js";
import { decision, micros } from "../support/decisions.js";
import { newTenant } from "../support/server.js";
import type { LoadServerStats } from "./support/load-server.js";
import { killAll } from "../support/processes.js";
import { type ServerProcess, startServerProcess } from "../support/built-server.js";

const CLIENTS = 64;
const TENANTS = 8;
const WARM_UP_MS = 2_000;
const MEASURED_MS = 5_000;
const POOL_MAX = 10;
// Growth allowed between the warm-up and the end, after a full GC.
const HEAP_GROWTH_MAX = 16 * 1024 * 1024;
// RSS also holds what the allocator keeps after the peak and PGlite's WASM
// memory (which never shrinks); the heap is the sharper measure.
const RSS_GROWTH_MAX = 128 * 1024 * 1024;

let dataDir: string | undefined;
afterAll(async () => {
  killAll();
  if (dataDir !== undefined) await fs.rm(dataDir, { recursive: true, force: true });
});

function stats(server: ServerProcess): Promise<LoadServerStats> {
  return new Promise((resolve) => {
    server.child.once("message", (m) => resolve(m as LoadServerStats));
    server.child.send("stats");
  });
}

function clientsFor(baseUrl: string, tenant: string) {
  const sessionManager = new Http2SessionManager(baseUrl);
  const header: Interceptor = (next) => (req) => {
    req.header.set(TENANT_HEADER, tenant);
    return next(req);
  };
  const transport = createGrpcTransport({ baseUrl, sessionManager, interceptors: [header] });
  return {
    sessionManager,
    workflows: createClient(WorkflowStateService, transport),
    breakers: createClient(CircuitBreakerService, transport),
    audit: createClient(RoutingAuditService, transport),
    statistics: createClient(StatisticsService, transport),
  };
}

/** One client's loop until `until`: a mixed workload; returns how many calls it made and the errors it saw. */
async function runClient(baseUrl: string, c: number, tenant: string, until: () => boolean) {
  const { sessionManager, workflows, breakers, audit, statistics } = clientsFor(baseUrl, tenant);
  const agentKey = `agent-${c % 4}`;
  const errors: string[] = [];
  const called = new Set<string>();
  let calls = 0;
  const call = async (name: string, work: () => Promise<unknown>) => {
    calls++;
    called.add(name);
    try {
      await work();
    } catch (err) {
      errors.push(`${name}: ${Code[ConnectError.from(err).code]} ${ConnectError.from(err).rawMessage}`);
    }
  };
  // What GetWorkflowExecution reads.
  await call("SaveWorkflowExecution", () =>
    workflows.saveWorkflowExecution({ execution: { executionId: `run-${c}-0`, workflowName: "load", status: WorkflowStatus.RUNNING } }),
  );
  // Clients start at different points of the workload, so that every RPC runs from the first round on.
  for (let i = c; !until(); i++) {
    const runningId = `run-${c}-${i % 5}`;
    switch (i % 12) {
      case 0:
        await call("SaveWorkflowExecution", () =>
          workflows.saveWorkflowExecution({
            execution: { executionId: runningId, workflowName: "load", status: WorkflowStatus.RUNNING, context: { i, c } },
          }),
        );
        break;
      case 1:
        await call("GetWorkflowExecution", () => workflows.getWorkflowExecution({ executionId: `run-${c}-0` }));
        break;
      case 2:
        await call("ListWorkflowExecutions", () => workflows.listWorkflowExecutions({ pageSize: 10 }));
        break;
      case 3:
        // Half the streams are cancelled by the client after their first message.
        await call("StreamIncompleteWorkflows", async () => {
          const abort = new AbortController();
          try {
            for await (const _ of workflows.streamIncompleteWorkflows({}, { signal: abort.signal })) {
              if (i % 24 === 3) abort.abort();
            }
          } catch (err) {
            if (!(abort.signal.aborted && ConnectError.from(err).code === Code.Canceled)) throw err;
          }
        });
        break;
      case 4:
        await call("SaveWorkflowExecution(completed)", () =>
          workflows.saveWorkflowExecution({
            execution: { executionId: `done-${c}-${i}`, workflowName: "load", status: WorkflowStatus.COMPLETED },
          }),
        );
        await call("DeleteWorkflowExecutions", () => workflows.deleteWorkflowExecutions({ completedBefore: { seconds: BigInt(Math.floor(Date.now() / 1000) + 60) } }));
        break;
      case 5:
        await call("AcquirePermission", () => breakers.acquirePermission({ agentKey }));
        await call("RecordCallOutcome", () => breakers.recordCallOutcome({ agentKey, success: i % 7 !== 0, duration: micros(1_000) }));
        break;
      case 6:
        await call("ListCircuitBreakerStates", () => breakers.listCircuitBreakerStates({}));
        break;
      case 7:
        await call("RecordRoutingDecision", () =>
          audit.recordRoutingDecision({ decision: decision({ decisionId: randomUUID(), selectedAgent: agentKey }), updateStatistics: true }),
        );
        break;
      case 8:
        await call("ListRoutingDecisions", () => audit.listRoutingDecisions({ selectedAgent: agentKey, pageSize: 5 }));
        break;
      case 9:
        await call("RecordTaskOutcome", () => statistics.recordTaskOutcome({ agentKey, success: true, duration: micros(2_000) }));
        await call("GetAgentStatistics", () => statistics.getAgentStatistics({ agentKey }));
        break;
      case 10:
        await call("ListTopPerformingAgents", () => statistics.listTopPerformingAgents({ limit: 5 }));
        break;
      case 11:
        await call("SummarizeAgentDecisions", () => audit.summarizeAgentDecisions({}));
        break;
    }
  }
  sessionManager.abort();
  return { calls, errors, called };
}

/** The server's backends in pg_stat_activity, each as "pid state wait_event: query". */
async function serverBackends(applicationName: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ backend: string }>(
      "SELECT pid || ' ' || coalesce(state, '') || ' ' || coalesce(wait_event, '') || ': ' || left(query, 80) AS backend FROM pg_stat_activity WHERE application_name = $1",
      [applicationName],
    );
    return rows.map((r) => r.backend);
  } finally {
    await client.end();
  }
}

describe(`${CLIENTS} concurrent clients on ${backendName}`, () => {
  it("a mixed workload across the four services: no errors, no leaked sessions, calls or connections, memory flat", async () => {
    const applicationName = `orchestrator-load-${randomUUID().slice(0, 8)}`;
    // Small stream batches: a stream the client cancels is still running on the server.
    // No background retention: its pass would hold a session of its own (for its lock) besides the pool.
    const env: NodeJS.ProcessEnv = { DATABASE_POOL_MAX: String(POOL_MAX), LOG_LEVEL: "warn", STREAM_BATCH_SIZE: "1", RETENTION_INTERVAL: "0" };
    if (process.env.TEST_DATABASE_URL) {
      const url = new URL(process.env.TEST_DATABASE_URL);
      url.searchParams.set("application_name", applicationName);
      Object.assign(env, postgresEnv(url.toString()));
    } else {
      // On disk, as deployed: with memory:// the data itself would grow the process.
      dataDir = await createPgliteDataDir("orchestrator-state-load-");
      env.DATA_DIR = dataDir;
    }
    const server = await startServerProcess(env, { entry: "test/failures/support/load-server.ts", nodeArgs: ["--expose-gc"], ipc: true });

    const tenants = Array.from({ length: TENANTS }, () => newTenant());
    const started = Date.now();
    const end = started + WARM_UP_MS + MEASURED_MS;
    const clients = Array.from({ length: CLIENTS }, (_, c) => runClient(server.baseUrl, c, tenants[c % TENANTS]!, () => Date.now() >= end));
    await new Promise((resolve) => setTimeout(resolve, WARM_UP_MS));
    const warm = await stats(server);
    const busyBackends = process.env.TEST_DATABASE_URL ? (await serverBackends(applicationName)).length : 0;
    const results = await Promise.all(clients);

    expect(results.flatMap((r) => r.errors)).toEqual([]);
    expect(results.every((r) => r.calls > 1)).toBe(true); // every client kept calling
    // Every RPC of the workload ran.
    expect(new Set(results.flatMap((r) => [...r.called])).size).toBe(15);

    // Every client closed its connection: the server sees no session, no call, no checked-out connection.
    let after = await stats(server);
    for (let waited = 0; (after.sessions > 0 || after.calls > 0) && waited < 5_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await stats(server);
    }
    expect({ sessions: after.sessions, calls: after.calls, poolUsed: after.poolUsed, poolPending: after.poolPending }).toEqual({
      sessions: 0,
      calls: 0,
      poolUsed: 0,
      poolPending: 0,
    });
    if (process.env.TEST_DATABASE_URL) {
      // The pool, plus at most the circuit-breaker feed's LISTEN connection.
      expect(busyBackends).toBeGreaterThan(0);
      // A connection the pool discarded (one that did not answer in time, or
      // may still hold a transaction) is closed at once, but its backend leaves
      // pg_stat_activity only when it has finished its statement: a loaded
      // machine may take seconds. A leak stays.
      let backends = await serverBackends(applicationName);
      for (let waited = 0; backends.length > POOL_MAX + 1 && waited < 15_000; waited += 250) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        backends = await serverBackends(applicationName);
      }
      expect(backends.length, backends.join("\n")).toBeLessThanOrEqual(POOL_MAX + 1);
    }
    expect(after.heapUsed - warm.heapUsed).toBeLessThan(HEAP_GROWTH_MAX);
    expect(after.rss - warm.rss).toBeLessThan(RSS_GROWTH_MAX);

    server.child.kill("SIGTERM");
    expect(await server.exited).toMatchObject({ code: 0, signal: null });
  });
});
