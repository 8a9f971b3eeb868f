// Shared by test/failures/availability.test.ts (both backends),
// availability.pglite.test.ts and availability.postgres.test.ts.
import type { Knex } from "knex";
import { afterEach } from "vitest";
import { WorkflowStatus } from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createDatabase, type DatabaseOptions } from "../../../src/db/database.js";
import { silentLogger } from "../../../src/logging/logger.js";
import { postgresOptions, postgresUrl } from "../../support/backend.js";
import type { AvailableServer } from "./available-server.js";
import { databaseTarget, proxiedUrl, TcpProxy } from "./tcp-proxy.js";

export const WORKFLOW = "orchestration.state.v1.WorkflowStateService";
export const MIGRATE_FAILED = "could not migrate the database; retrying (health is NOT_SERVING)";
export const UNREACHABLE = "database unreachable: health is NOT_SERVING, calls answer UNAVAILABLE";

/** Servers a test started; closed (with their databases) after each test. */
export const running: AvailableServer[] = [];
/** Proxies a test started; cut after each test. */
export const proxies: TcpProxy[] = [];

/** Registers the afterEach that cuts `proxies` and closes `running`; call once at the top of a test file. */
export function cleanUpAfterEach(): void {
  afterEach(async () => {
    for (const proxy of proxies.splice(0)) await proxy.cut();
    for (const s of running.splice(0)) await s.close();
  });
}

/** A SaveWorkflowExecution request. */
export function execution(executionId: string, step = 0) {
  return { execution: { executionId, workflowName: "wf", status: WorkflowStatus.RUNNING, context: { step } } };
}

/**
 * The PostgreSQL server of TEST_DATABASE_URL behind a TcpProxy on 127.0.0.1
 * (cut after the test), with a knex through it (`options` add to its
 * configuration); the proxy starts up or down.
 */
export async function proxiedPostgres(up: boolean, options: Partial<DatabaseOptions> = {}): Promise<{ proxy: TcpProxy; knex: Knex }> {
  const pgUrl = postgresUrl();
  const proxy = new TcpProxy(databaseTarget(pgUrl));
  proxies.push(proxy);
  const port = up ? await proxy.listen() : await proxy.reservePort();
  const knex = createDatabase({ ...postgresOptions(proxiedUrl(pgUrl, port), { direct: false }), poolMax: 4, logger: silentLogger, ...options });
  return { proxy, knex };
}
