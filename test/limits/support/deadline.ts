// Shared by test/limits/deadline.test.ts (both backends) and
// test/limits/deadline.postgres.test.ts (PostgreSQL only).
import { WorkflowStatus } from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import type { TestServer } from "../../support/server.js";

/** The deadline of the call under test. */
export const DEADLINE_MS = 400;
/** How late after the deadline the answer may come: generous for slow CI machines. */
export const SLACK_MS = 1_500;

/**
 * The server's own answer (its log line) to the tenant's second save, the one
 * with a deadline; not the client's: a client gives up at its deadline
 * whatever the server does. Waits up to `ms`.
 */
export async function serverAnswer(t: TestServer, tenant: string, ms: number): Promise<Record<string, unknown> | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const lines = t.logs.filter((l) => l.msg === "rpc" && l.tenant === tenant && l.procedure === "orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution");
    if (lines.length >= 2 || Date.now() > end) return lines[1];
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A SaveWorkflowExecution request for execution "e" with this error message. */
export const execution = (errorMessage: string) => ({
  execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING, errorMessage },
});
