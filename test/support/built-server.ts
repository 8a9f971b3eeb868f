// The server as deployed, as a child process of the tests: the run's one
// copy of the repository with its dist/ built (so that a build, npm ci or a
// stale dist/ never touches the tree other tests run from), and its built
// entry, dist/src/main.js, with the node flags that npm start and the
// container run it with (start-command.ts). Starting the built entry costs
// about a second of CPU; the same server through tsx (src/main.ts) cost three,
// compiling every module again in each process, a dozen processes per run.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { inject } from "vitest";
import { exitOf, freePort, type Proc, root, run, SERVING } from "./processes.js";
import { startNodeFlags } from "./start-command.js";

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
 * the built server (startServerProcess, serverProcess), copy it
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
  return run(process.execPath, [...startNodeFlags(), "dist/src/main.js"], dir, { HOST: "127.0.0.1", ...env });
}

/** A server process that logged its serving line. */
export interface ServerProcess extends Proc {
  port: number;
  baseUrl: string;
}

/**
 * Starts the built server of the run's shared copy (sharedBuiltCopy), or with
 * `entry` that file of the repository through tsx (a test's own entry, such as
 * test/failures/support/load-server.ts), both with npm start's node flags
 * (the server's memory depends on them), with `env` (see run),
 * HOST=127.0.0.1 and a free PORT, and waits for its serving line: 90 s at
 * most, since an embedded PGlite created in a new DATA_DIR runs initdb and
 * every migration first, which takes long on a loaded machine. A process that
 * exits or stays silent is killed and the test fails with what it said.
 */
export async function startServerProcess(
  env: NodeJS.ProcessEnv,
  options: { entry?: string; nodeArgs?: string[]; ipc?: boolean } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  const childEnv = { HOST: "127.0.0.1", PORT: String(port), ...env };
  const { entry, nodeArgs = [], ipc } = options;
  const proc =
    entry === undefined
      ? run(process.execPath, [...nodeArgs, ...startNodeFlags(), "dist/src/main.js"], await sharedBuiltCopy(), childEnv, { ipc })
      : run(process.execPath, [...nodeArgs, ...startNodeFlags(), "--import", "tsx", entry], root, childEnv, { ipc });
  try {
    await proc.line(SERVING, 90_000);
  } catch (err) {
    proc.child.kill("SIGKILL");
    throw new Error(`${entry ?? "dist/src/main.js"} did not start: ${(err as Error).message}`);
  }
  return Object.assign(proc, { port, baseUrl: `http://127.0.0.1:${port}` });
}
