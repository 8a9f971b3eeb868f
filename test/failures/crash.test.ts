// A crash loses nothing acknowledged: the real server process (src/main.ts, built)
// takes a write load from several concurrent clients, is killed with SIGKILL
// in the middle of it, and started again on the same data (PGlite: the same
// DATA_DIR; PostgreSQL: the same database). Every acknowledged save is there
// with its acknowledged content or a later one, and no execution is
// half-written: each save writes every part (definition, context, step
// executions, step outputs, labels) for the same step, so any mix shows.
import * as fs from "node:fs/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type WorkflowExecution, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName, createPgliteDataDir, postgresEnv } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { newTenant } from "../support/server.js";
import { killAll } from "../support/processes.js";
import { startServerProcess } from "../support/built-server.js";

const CLIENTS = 8;
const IDS_PER_CLIENT = 4;

let dataDir: string;
beforeAll(async () => {
  dataDir = await createPgliteDataDir("orchestrator-state-crash-");
});
afterEach(killAll);
afterAll(async () => {
  await fs.rm(dataDir, { recursive: true, force: true });
});

function databaseEnv(): NodeJS.ProcessEnv {
  return process.env.TEST_DATABASE_URL ? postgresEnv() : { DATA_DIR: dataDir };
}

/** Save number `step` of an execution: every JSON part says `step`, and grows with it. */
function version(executionId: string, step: number) {
  const steps = Array.from({ length: step }, (_, i) => `s${i}`);
  return {
    executionId,
    workflowName: "crash",
    status: WorkflowStatus.RUNNING,
    definition: { name: "crash", version: `1.0.${step}`, steps: steps.map((stepId) => ({ stepId })) },
    context: { step, padding: "x".repeat(step * 40) },
    stepExecutions: steps.map((stepId) => ({ stepId, status: WorkflowStatus.COMPLETED, agentKey: "agent", attempt: 1 })),
    stepOutputs: Object.fromEntries(steps.map((stepId, i) => [stepId, { kind: { case: "numberValue" as const, value: i } }])),
    labels: { step: String(step) },
  };
}

/** The step every part of a stored execution says, or an error naming the parts that disagree. */
function stepOf(e: WorkflowExecution): number {
  const step = Number(e.labels.step);
  const parts = {
    context: e.context?.step,
    padding: typeof e.context?.padding === "string" ? e.context.padding.length / 40 : undefined,
    definitionVersion: e.definition?.version === `1.0.${step}` ? step : e.definition?.version,
    definitionSteps: e.definition?.steps.length,
    stepExecutions: e.stepExecutions.length,
    stepOutputs: Object.keys(e.stepOutputs).length,
  };
  for (const [part, value] of Object.entries(parts)) {
    if (value !== step) throw new Error(`${e.executionId} is half-written: labels say step ${step}, ${part} says ${String(value)}`);
  }
  return step;
}

describe(`a SIGKILL during a write load on ${backendName}`, () => {
  it("loses no acknowledged write and leaves no half-written execution", async () => {
    const tenant = newTenant();
    const first = await startServerProcess(databaseEnv());
    const acked = new Map<string, number>(); // execution id -> highest acknowledged step
    const errorsBeforeKill: unknown[] = [];
    let killed = false;
    let stop = false;

    const writer = async (c: number) => {
      const client = workflowClient(first.baseUrl, tenant);
      for (let step = 1; !stop; step++) {
        const executionId = `c${c}-${step % IDS_PER_CLIENT}`;
        try {
          await client.saveWorkflowExecution({ execution: version(executionId, step) });
          if (!killed) acked.set(executionId, step); // answered before the kill: acknowledged
        } catch (err) {
          if (!killed) errorsBeforeKill.push(err);
          return; // the server is gone
        }
      }
    };
    const writers = Array.from({ length: CLIENTS }, (_, c) => writer(c));

    // Kill in the middle of the load, once a good number of saves are acknowledged.
    const started = Date.now();
    while (acked.size < CLIENTS * IDS_PER_CLIENT || [...acked.values()].reduce((a, b) => a + b, 0) < 400) {
      if (Date.now() - started > 20_000) throw new Error(`only ${acked.size} executions acknowledged in 20 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    killed = true;
    first.child.kill("SIGKILL");
    expect(await first.exited).toMatchObject({ code: null, signal: "SIGKILL" });
    stop = true;
    await Promise.all(writers);
    expect(errorsBeforeKill).toEqual([]);
    const acknowledged = new Map(acked);

    const second = await startServerProcess(databaseEnv());
    const client = workflowClient(second.baseUrl, tenant);
    for (const [executionId, step] of acknowledged) {
      const { execution } = await client.getWorkflowExecution({ executionId });
      expect(stepOf(execution!), executionId).toBeGreaterThanOrEqual(step);
    }
    // Every stored execution of the tenant, acknowledged or not, is whole.
    const stored: WorkflowExecution[] = [];
    for await (const res of client.streamIncompleteWorkflows({})) stored.push(res.execution!);
    expect(stored.length).toBeGreaterThanOrEqual(acknowledged.size);
    for (const e of stored) stepOf(e);

    second.child.kill("SIGTERM");
    expect(await second.exited).toMatchObject({ code: 0, signal: null });
  });
});
