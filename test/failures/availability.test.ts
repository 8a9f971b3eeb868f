// The database is unreachable or lost: the server keeps running, health says
// NOT_SERVING, calls answer UNAVAILABLE (retryable), nothing hangs past its
// deadline, and everything recovers by itself (src/db/availability.ts).
// These run on both backends; availability.pglite.test.ts and
// availability.postgres.test.ts hold the tests for one backend only.
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { createDatabase } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";
import { backendName, createPgliteDatabase, postgresOptions } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { timedCode } from "../support/errors.js";
import { newTenant } from "../support/server.js";
import { startAvailableServer } from "./support/available-server.js";
import { cleanUpAfterEach, execution, MIGRATE_FAILED, running, WORKFLOW } from "./support/availability.js";
import { TcpProxy } from "./support/tcp-proxy.js";

const pgUrl = process.env.TEST_DATABASE_URL;

cleanUpAfterEach();

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
      ? createDatabase({ ...postgresOptions(pgUrl), poolMax: 4, logger: silentLogger })
      : await createPgliteDatabase("empty");
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
      ? createDatabase({ ...postgresOptions(pgUrl), poolMax: 4, logger: silentLogger })
      : await createPgliteDatabase("empty");
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
