// Real processes for the lifecycle tests: a copy of the repository to build
// and run (so that a build, npm ci or a stale dist/ never touches the tree
// other tests run from), and its built server as a child process
// (test/support/processes.ts runs it).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { expect, inject } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { workflowClient } from "../support/clients.js";
import { exitOf, freePort, type Proc, root, run, SERVING } from "../support/processes.js";
import { newTenant } from "../support/server.js";

/** What a build reads and what npm needs, copied with their modification times. */
const TREE = ["src", "gen", "web", "scripts", "package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", "knexfile.ts"];

/**
 * Copies the repository's sources into a fresh temporary directory (no dist/,
 * no node_modules/). `nodeModules`: link the repository's node_modules (dev
 * dependencies included) into it.
 */
export function copyRepository(prefix: string, { nodeModules }: { nodeModules: boolean }): string {
  return copyInto(fs.mkdtempSync(path.join(os.tmpdir(), prefix)), { nodeModules });
}

function copyInto(dir: string, { nodeModules }: { nodeModules: boolean }): string {
  for (const entry of TREE) fs.cpSync(path.join(root, entry), path.join(dir, entry), { recursive: true, preserveTimestamps: true });
  if (nodeModules) fs.symlinkSync(fs.realpathSync(path.join(root, "node_modules")), path.join(dir, "node_modules"), "dir");
  return dir;
}

/** Where the run's shared copy lives (global-setup.ts removes the run's directory), and its failure stamp. */
function sharedCopyPaths(): { dir: string; failed: string } {
  return { dir: path.join(inject("runDir"), "built-copy"), failed: path.join(inject("runDir"), "built-copy.failed") };
}

/** Whether this call made the shared copy's directory (then its caller builds it); false when another file did first. */
function claimSharedDirectory(dir: string): boolean {
  try {
    fs.mkdirSync(dir);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return false;
  }
}

/**
 * A copy of the repository (with node_modules linked) whose dist/ is built,
 * shared by the files of a run that change nothing in the tree: they start
 * the built server (fail-fast.test.ts, fail-fast.postgres.test.ts), copy it
 * (npm-ci-omit-dev.test.ts) or run its `npm run hash-key`
 * (test/auth/readme-security.test.ts). A build takes tens of seconds, so a
 * run makes one: by npm start in npm-start.test.ts, which the run starts
 * first (claimUnbuiltSharedCopy), or else by the first file to ask, which
 * copies and builds; the others wait for the stamp the build writes last
 * (dist/.build-stamp), or for a failure.
 */
export async function sharedBuiltCopy(): Promise<string> {
  const { dir, failed } = sharedCopyPaths();
  if (!claimSharedDirectory(dir)) {
    for (const end = Date.now() + 300_000; Date.now() < end; await new Promise((resolve) => setTimeout(resolve, 200))) {
      if (fs.existsSync(path.join(dir, "dist/.build-stamp"))) return dir;
      if (fs.existsSync(failed)) throw new Error(`the build failed: ${fs.readFileSync(failed, "utf8")}`);
    }
    throw new Error("the shared build did not finish within 300 s");
  }
  copyInto(dir, { nodeModules: true });
  const build = run(process.execPath, ["scripts/build.mjs"], dir, {});
  const { code } = await exitOf(build, 240_000).catch((err: Error) => ({ code: err.message }));
  if (code !== 0) {
    const output = `${String(code)} ${build.garbage.join("\n")} ${build.stderr()}`;
    fs.writeFileSync(failed, output);
    throw new Error(`the build failed: ${output}`);
  }
  return dir;
}

/**
 * The run's shared copy (sharedBuiltCopy), not built yet, for the file whose
 * `npm start` builds a missing dist/ (npm-start.test.ts): the build it tests
 * is then the one the other files wait for, instead of a second one.
 * Undefined when another file has claimed the copy first (the caller then
 * makes a copy of its own). Whoever takes it changes nothing in the tree but
 * dist/, and calls `failed` when no build came of it, so that the files
 * waiting stop.
 */
export function claimUnbuiltSharedCopy(): { dir: string; failed(reason: string): void } | undefined {
  const { dir, failed } = sharedCopyPaths();
  if (!claimSharedDirectory(dir)) return undefined;
  copyInto(dir, { nodeModules: true });
  return {
    dir,
    failed(reason) {
      if (!fs.existsSync(path.join(dir, "dist/.build-stamp"))) fs.writeFileSync(failed, reason);
    },
  };
}

/** The built server of a copy, as the Dockerfile's CMD and npm start run it. */
export function serverProcess(dir: string, env: NodeJS.ProcessEnv): Proc {
  return run(process.execPath, ["--enable-source-maps", "dist/src/main.js"], dir, { HOST: "127.0.0.1", ...env });
}

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
