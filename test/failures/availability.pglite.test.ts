// PGlite only (vitest.config.ts collects *.pglite.test.ts files only when
// TEST_DATABASE_URL is unset): the embedded database lost while running.
// availability.postgres.test.ts loses a PostgreSQL server instead.
import type { PGlite } from "@electric-sql/pglite";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { createPgliteDatabase } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { timedCode } from "../support/errors.js";
import { newTenant } from "../support/server.js";
import { startAvailableServer, waitFor } from "./support/available-server.js";
import { cleanUpAfterEach, execution, running, UNREACHABLE } from "./support/availability.js";

cleanUpAfterEach();

describe("database availability on PGlite", () => {
  it("a database lost while running (the PGlite instance closed) turns health NOT_SERVING and calls answer UNAVAILABLE", async () => {
    const knex = await createPgliteDatabase("empty");
    const s = await startAvailableServer(knex, { probeIntervalMs: 100 });
    running.push(s);
    const client = workflowClient(s.baseUrl, newTenant());
    await client.saveWorkflowExecution(execution("e"));
    expect(await s.health()).toBe(ServingStatus.SERVING);

    await (knex.client as { pglite: PGlite }).pglite.close();
    expect((await timedCode(client.getWorkflowExecution({ executionId: "e" }))).code).toBe(Code.Unavailable);
    await waitFor(() => s.health(), ServingStatus.NOT_SERVING, 2_000);
    expect(s.logs.some((l) => l.msg === UNREACHABLE)).toBe(true);
  });
});
