// Real processes for the lifecycle tests: npm start in a copy of the
// repository (test/support/built-server.ts makes the copies), and what they
// check of a server that runs.
import { expect } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { workflowClient } from "../support/clients.js";
import { exitOf, freePort, type Proc, run, SERVING } from "../support/processes.js";
import { serverProcess } from "../support/built-server.js";
import { newTenant } from "../support/server.js";

/** Whether a process with this PID exists. */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

const npm = process.platform === "win32" ? "npm.cmd" : "npm";

/** `npm start` in `cwd` with `env` (the database's variables among them), up to its "serving" line. */
export async function npmStart(cwd: string, env: NodeJS.ProcessEnv): Promise<{ proc: Proc; port: number; pid: number }> {
  const port = await freePort();
  const proc = run(npm, ["start"], cwd, { HOST: "127.0.0.1", PORT: String(port), ...env });
  await proc.line(SERVING, 240_000);
  const pid = (await proc.line("starting orchestrator-state")).pid as number;
  return { proc, port, pid };
}

/** Saves and reads back one execution: the server on `port` serves. */
export async function roundTrip(port: number): Promise<void> {
  const client = workflowClient(`http://127.0.0.1:${port}`, newTenant());
  const saved = await client.saveWorkflowExecution({ execution: { executionId: "e-1", workflowName: "wf", status: WorkflowStatus.RUNNING } });
  expect((await client.getWorkflowExecution({ executionId: "e-1" })).execution).toEqual(saved.execution);
}

/** Starts the built server of `dir` with `env` and expects it to stop by itself within 5 s, as README "Exit codes" says. */
export async function expectRefusal(dir: string, env: NodeJS.ProcessEnv, expected: { code: number; variable: string; msg: RegExp }) {
  const proc = serverProcess(dir, { PORT: String(await freePort()), ...env });
  const { code, signal, ms } = await exitOf(proc, 30_000);
  expect({ code, signal }).toEqual({ code: expected.code, signal: null });
  expect(ms).toBeLessThan(5_000);
  expect(proc.garbage).toEqual([]);
  expect(proc.stderr()).toBe("");
  const errors = proc.logs.filter((l) => l.level === "error");
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatchObject({ variable: expected.variable, exitCode: expected.code });
  expect(String(errors[0]!.msg)).toMatch(expected.msg);
  expect(String(errors[0]!.msg)).toContain(expected.variable);
  expect(JSON.stringify(proc.logs)).not.toMatch(/\\n\s+at |"stack"/);
  return proc;
}
