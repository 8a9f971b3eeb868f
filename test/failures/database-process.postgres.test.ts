// src/main.ts (built) as a process with its PostgreSQL behind a TCP proxy the test
// cuts and restores: it starts although the database is unreachable, serves
// health NOT_SERVING and UNAVAILABLE until the database is back, then
// migrates and serves by itself; a cut while it runs (idle pooled connections
// dying included) does not crash it, and it recovers again. PostgreSQL only
// (vitest.config.ts collects *.postgres.test.ts files only when
// TEST_DATABASE_URL is set).
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { postgresEnv, postgresUrl } from "../support/backend.js";
import { connectClient, workflowClient } from "../support/clients.js";
import { timedCode } from "../support/errors.js";
import { newTenant } from "../support/server.js";
import { waitFor } from "./support/available-server.js";
import { MIGRATE_FAILED, UNREACHABLE } from "./support/availability.js";
import { killAll } from "../support/processes.js";
import { startServerProcess } from "../support/built-server.js";
import { databaseTarget, proxiedUrl, TcpProxy } from "./support/tcp-proxy.js";

const pgUrl = postgresUrl();
let proxy: TcpProxy | undefined;
afterEach(async () => {
  killAll();
  await proxy?.cut();
});

describe("src/main.ts with its PostgreSQL database behind a TCP proxy", () => {
  it("starts without its database, recovers by itself when it comes back, survives a cut while running, and recovers again", async () => {
    proxy = new TcpProxy(databaseTarget(pgUrl));
    const port = await proxy.reservePort();
    const main = await startServerProcess({
      ...postgresEnv(proxiedUrl(pgUrl, port), { direct: false }),
      DATABASE_POOL_MAX: "4",
      DATABASE_RETRY_MAX_MS: "300",
      DATABASE_PROBE_INTERVAL_MS: "200",
    });
    const health = connectClient(Health, main.baseUrl, undefined);
    const status = async () => (await health.check({ service: "" })).status;
    const client = workflowClient(main.baseUrl, newTenant());
    const save = (step: number) =>
      client.saveWorkflowExecution({ execution: { executionId: "e", workflowName: "wf", status: WorkflowStatus.RUNNING, context: { step } } });

    expect(await status()).toBe(ServingStatus.NOT_SERVING);
    expect((await timedCode(save(0))).code).toBe(Code.Unavailable);

    await proxy.restore();
    await waitFor(status, ServingStatus.SERVING, 5_000);
    await Promise.all([1, 2, 3, 4].map((step) => save(step))); // several pooled connections, idle afterwards

    await proxy.cut();
    await waitFor(status, ServingStatus.NOT_SERVING, 3_000);
    expect((await timedCode(client.getWorkflowExecution({ executionId: "e" }))).code).toBe(Code.Unavailable);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(main.alive).toBe(true);

    await proxy.restore();
    await waitFor(status, ServingStatus.SERVING, 5_000);
    await save(5);
    expect((await client.getWorkflowExecution({ executionId: "e" })).execution?.context).toEqual({ step: 5 });

    main.child.kill("SIGTERM");
    expect(await main.exited).toMatchObject({ code: 0, signal: null });
    expect(main.logs.some((l) => l.msg === UNREACHABLE)).toBe(true);
    expect(main.logs.filter((l) => l.level === "error" && l.msg !== MIGRATE_FAILED)).toEqual([]);
  });
});
