// The real entry point (src/main.ts, built) as a child process, the way it is
// deployed: it serves once it logs "serving", logs one JSON line per RPC,
// exits with code 0 on SIGTERM and on SIGINT after closing the database, and
// what it acknowledged is still there when it starts again on the same data.
// On PGlite the data lives in a DATA_DIR of its own (migrated already); with TEST_DATABASE_URL the
// child uses that PostgreSQL database (DATABASE_URL).
import * as fs from "node:fs/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName, createPgliteDataDir, postgresEnv } from "./support/backend.js";
import { workflowClient } from "./support/clients.js";
import { exitOf, killAll, SERVING } from "./support/processes.js";
import { type ServerProcess, startServerProcess } from "./support/built-server.js";
import { startCollector } from "./support/otlp-collector.js";
import { newTenant } from "./support/server.js";

const SAVE = "orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution";
const GET = "orchestration.state.v1.WorkflowStateService/GetWorkflowExecution";

let dataDir: string;

beforeAll(async () => {
  dataDir = await createPgliteDataDir("orchestrator-state-main-");
});
// A test that failed part way must not leave its server running.
afterEach(killAll);
afterAll(async () => {
  await fs.rm(dataDir, { recursive: true, force: true });
});

/** Starts the entry point on the file's data and waits for its "serving" line. */
function startMain(env: Record<string, string> = {}): Promise<ServerProcess> {
  return startServerProcess({ ...(process.env.TEST_DATABASE_URL ? postgresEnv() : { DATA_DIR: dataDir }), ...env });
}

/** Sends `signal` and waits for the exit (at most 15 s). */
function stopMain(main: ServerProcess, signal: NodeJS.Signals) {
  main.child.kill(signal);
  return exitOf(main, 15_000);
}

// One tenant and execution for the whole file: the second test reads what the first wrote.
const tenant = newTenant();
const executionId = "order-42";
let etag = "";

describe(`src/main.ts as a process on ${backendName}`, () => {
  it("serves calls, logs one JSON rpc line per call, and exits 0 on SIGTERM after closing the database", async () => {
    const main = await startMain();
    expect(main.logs.find((l) => l.msg === SERVING)).toMatchObject({ port: main.port, host: "127.0.0.1" });

    const client = workflowClient(main.baseUrl, tenant);
    const saved = await client.saveWorkflowExecution({
      execution: {
        executionId,
        workflowName: "fulfil-order",
        status: WorkflowStatus.RUNNING,
        context: { orderId: 42, priority: "high" },
        labels: { team: "fulfilment" },
      },
    });
    etag = saved.execution!.etag;
    const got = await client.getWorkflowExecution({ executionId });
    expect(got.execution).toEqual(saved.execution);

    const { code, signal } = await stopMain(main, "SIGTERM");
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(main.garbage).toEqual([]);
    const rpcs = main.logs.filter((l) => l.msg === "rpc");
    expect(rpcs).toHaveLength(2);
    expect(rpcs.map((l) => l.procedure)).toEqual([SAVE, GET]);
    for (const line of rpcs) {
      expect(line).toMatchObject({ level: "info", tenant, code: "OK" });
      expect(line.durationMs).toEqual(expect.any(Number));
      expect(line.durationMs as number).toBeGreaterThanOrEqual(0);
    }
    const msgs = main.logs.map((l) => l.msg);
    expect(main.logs.find((l) => l.msg === "signal received")).toMatchObject({ signal: "SIGTERM" });
    expect(msgs.indexOf("server stopped")).toBeGreaterThan(msgs.indexOf("signal received"));
    expect(msgs.at(-1)).toBe("database closed; exiting");
  }, 180_000);

  it("still has the acknowledged execution after a restart on the same data, and exits 0 on SIGINT", async () => {
    expect(etag).not.toBe(""); // written by the previous test
    const main = await startMain();
    const got = await workflowClient(main.baseUrl, tenant).getWorkflowExecution({ executionId });
    expect(got.execution).toMatchObject({
      executionId,
      workflowName: "fulfil-order",
      status: WorkflowStatus.RUNNING,
      context: { orderId: 42, priority: "high" },
      labels: { team: "fulfilment" },
      etag,
    });

    const { code, signal } = await stopMain(main, "SIGINT");
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(main.garbage).toEqual([]);
    expect(main.logs.find((l) => l.msg === "signal received")).toMatchObject({ signal: "SIGINT" });
    expect(main.logs.map((l) => l.msg).at(-1)).toBe("database closed; exiting");
  }, 180_000);

  // Tracing's modules are loaded only when tracing is on (src/main.ts): this
  // is the path that loads them.
  it("with an OTLP endpoint, says so at startup and exports a SERVER span per call, the last ones on SIGTERM", async () => {
    const collector = await startCollector();
    try {
      const main = await startMain({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: collector.url, OTEL_SERVICE_NAME: "main-process-test" });
      expect(main.logs.find((l) => l.msg === "exporting traces with OTLP")).toMatchObject({ url: collector.url, protocol: "http/protobuf" });
      await workflowClient(main.baseUrl, tenant).getWorkflowExecution({ executionId });
      const { code } = await stopMain(main, "SIGTERM");
      expect(code).toBe(0);
      const rpc = collector.spans.find((span) => span.kind === 2 && span.attributes["rpc.method"] === "GetWorkflowExecution");
      expect(rpc).toMatchObject({ serviceName: "main-process-test", attributes: { "rpc.grpc.status_code": 0 } });
    } finally {
      await collector.close();
    }
  }, 180_000);
});
