// Real processes for the lifecycle tests: a copy of the repository to build
// and run (so that a build, npm ci or a stale dist/ never touches the tree
// other tests run from), and a child process whose stdout lines are parsed as
// JSON, with its exit awaited.
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { onLines } from "../failures/support/main-process.js";

export const root = path.resolve(import.meta.dirname, "../..");
export const SERVING = "serving gRPC, gRPC-Web and Connect over h2c";

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

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Whether `port` on 127.0.0.1 can be listened on now (nobody holds it). */
export async function portIsFree(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(false));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A child process of a test. */
export interface Proc {
  child: ChildProcess;
  /** stdout lines that parsed as JSON objects. */
  logs: Record<string, unknown>[];
  /** stdout lines that did not. */
  garbage: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  /** Resolves with the first line whose msg is `msg` (rejects if the process exits first, or after `timeoutMs`). */
  line(msg: string | RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
}

const running = new Set<ChildProcess>();

/** SIGKILLs what is still running (afterEach). */
export function killAll(): void {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
}

/**
 * Spawns `command args` in `cwd` with `env` over a clean environment (no
 * DATABASE_URL, DATA_DIR, PORT, AUTH_* from this process) and LOG_LEVEL=info.
 */
export function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, input?: string): Proc {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info" };
  for (const name of Object.keys(childEnv)) {
    if (/^(DATABASE_URL|DATA_DIR|PORT|HOST|METRICS_PORT|DASHBOARD_PORT|AUTH_|TLS_|OTEL_|npm_)/.test(name)) delete childEnv[name];
  }
  Object.assign(childEnv, env);
  const began = Date.now();
  const child = spawn(command, args, { cwd, env: childEnv, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
  if (input !== undefined) child.stdin!.end(input);
  running.add(child);
  const logs: Record<string, unknown>[] = [];
  const garbage: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal, ms: Date.now() - began });
    }),
  );
  onLines(child.stdout!, (text) => {
    try {
      const parsed = JSON.parse(text) as unknown;
      if (typeof parsed !== "object" || parsed === null) throw new Error("not an object");
      logs.push(parsed as Record<string, unknown>);
    } catch {
      garbage.push(text);
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr.push(chunk));
  const describe = () =>
    `\nstdout:\n  ${[...logs.map((l) => JSON.stringify(l).slice(0, 400)), ...garbage].join("\n  ")}\nstderr:\n  ${stderr.join("").slice(-3000)}`;
  return {
    child,
    logs,
    garbage,
    stderr: () => stderr.join(""),
    exited,
    line(msg, timeoutMs = 60_000) {
      const matches = (l: Record<string, unknown>) => (typeof msg === "string" ? l.msg === msg : msg.test(String(l.msg)));
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find(matches);
          if (found === undefined) return;
          done();
          resolve(found);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no line ${String(msg)} within ${timeoutMs} ms${describe()}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        void exited.then(({ code, signal }) => {
          check();
          if (!waiters.has(check)) return;
          done();
          reject(new Error(`exited (code ${code}, signal ${signal}) before a line ${String(msg)}${describe()}`));
        });
        check();
      });
    },
  };
}

/** Waits for the exit, at most `timeoutMs`. */
export async function exitOf(proc: Proc, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      proc.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no exit within ${timeoutMs} ms; stdout: ${JSON.stringify(proc.logs).slice(0, 3000)} ${proc.stderr()}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
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
