// A Node orchestrator's round trip through orchestrator-state: save a workflow
// execution, ask the agent's breaker, report the call, save the step with the
// etag (re-reading on ABORTED), and read the BadRequest detail of a bad call.
//
//   npx tsx examples/node-client/main.ts http://127.0.0.1:50051 7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10
import { pathToFileURL } from "node:url";
import { clone, create } from "@bufbuild/protobuf";
import {
  BadRequestSchema,
  Code,
  ConnectError,
  createStateClients,
  type StateClientOptions,
  type StateClients,
  StepExecutionSchema,
  type WorkflowExecution,
  WorkflowExecutionSchema,
  WorkflowStatus,
} from "orchestrator-state/client";

/** Runs one step of one workflow and returns what it saw. */
export async function runExample(options: StateClientOptions, executionId = "node-example-1") {
  const state = createStateClients(options);
  try {
    const { execution } = await state.workflowState.saveWorkflowExecution({
      execution: {
        executionId,
        workflowName: "fulfil-order",
        status: WorkflowStatus.RUNNING,
        definition: { steps: [{ stepId: "fetch", requiredCapability: "erp-read" }] },
      },
    });

    const agentKey = "fetcher-1";
    const { permitted } = await state.circuitBreakers.acquirePermission({ agentKey });
    const success = permitted; // ... call the agent here when permitted ...
    const duration = { seconds: 0n, nanos: 250_000_000 };
    if (permitted) {
      await state.circuitBreakers.recordCallOutcome({ agentKey, success, duration });
      await state.statistics.recordTaskOutcome({ agentKey, success, duration });
    }

    const saved = await saveStep(state, execution!, agentKey, success);

    // A bad request answers INVALID_ARGUMENT with a google.rpc.BadRequest detail.
    let badFields: string[] = [];
    try {
      await state.workflowState.getWorkflowExecution({ executionId: "" });
    } catch (err) {
      const error = ConnectError.from(err);
      if (error.code !== Code.InvalidArgument) throw error;
      badFields = error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
    }
    return { permitted, saved, badFields };
  } finally {
    state.close();
  }
}

/** Saves the step's outcome with the execution's etag; on ABORTED reads it again and re-applies. */
async function saveStep(state: StateClients, read: WorkflowExecution, agentKey: string, success: boolean) {
  const status = success ? WorkflowStatus.COMPLETED : WorkflowStatus.FAILED;
  let current = read;
  for (let round = 0; round < 5; round++) {
    const execution = clone(WorkflowExecutionSchema, current);
    execution.status = status;
    execution.stepExecutions = [
      ...current.stepExecutions.filter((s) => s.stepId !== "fetch"),
      create(StepExecutionSchema, { stepId: "fetch", agentKey, attempt: 1, status }),
    ];
    try {
      return (await state.workflowState.saveWorkflowExecution({ execution, etag: current.etag })).execution!;
    } catch (err) {
      if (ConnectError.from(err).code !== Code.Aborted) throw err;
      current = (await state.workflowState.getWorkflowExecution({ executionId: current.executionId })).execution!;
    }
  }
  throw new Error(`${read.executionId}: still ABORTED after 5 rounds`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [baseUrl = "http://127.0.0.1:50051", tenantId, apiKey] = process.argv.slice(2);
  const result = await runExample({ baseUrl, tenantId, apiKey });
  console.log(JSON.stringify({ permitted: result.permitted, status: WorkflowStatus[result.saved.status], etag: result.saved.etag, badFields: result.badFields }));
}
