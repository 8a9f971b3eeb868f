// Real processes for the lifecycle tests: a copy of the repository to build
// and run (so that a build, npm ci or a stale dist/ never touches the tree
// other tests run from), and its built server as a child process
// (test/support/processes.ts runs it).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type Proc, root, run } from "../support/processes.js";

/** What a build reads and what npm needs, copied with their modification times. */
const TREE = ["src", "gen", "web", "scripts", "package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", "knexfile.ts"];

/**
 * Copies the repository's sources into a fresh temporary directory (no dist/,
 * no node_modules/). `nodeModules`: link the repository's node_modules (dev
 * dependencies included) into it.
 */
export function copyRepository(prefix: string, { nodeModules }: { nodeModules: boolean }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  for (const entry of TREE) fs.cpSync(path.join(root, entry), path.join(dir, entry), { recursive: true, preserveTimestamps: true });
  if (nodeModules) fs.symlinkSync(fs.realpathSync(path.join(root, "node_modules")), path.join(dir, "node_modules"), "dir");
  return dir;
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
