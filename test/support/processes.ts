// Child processes of the tests: the server (test/support/built-server.ts
// starts it), npm and the CLIs. Their stdout lines are
// parsed as JSON as they arrive, their exit is awaited, and whatever a failed
// test left running is killed by killAll (afterEach/afterAll).
import { type ChildProcess, spawn } from "node:child_process";
import * as net from "node:net";
import * as path from "node:path";

/** The repository's root, where src/main.ts runs from. */
export const root = path.resolve(import.meta.dirname, "../..");
/** The line a server logs once it accepts calls. */
export const SERVING = "serving gRPC, gRPC-Web and Connect over h2c";

/** Calls `onLine` with each whole line a child process writes to `stream` (its stdout or stderr), as it arrives. */
export function onLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) onLine(line);
  });
}

/** A port nobody listens on right now (PORT=0 would hide the port from the test). */
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
  /** Whether the process is still running. */
  readonly alive: boolean;
  /** Resolves with the first line whose msg is `msg` (rejects if the process exits first, or after `timeoutMs`). */
  line(msg: string | RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
}

const running = new Set<ChildProcess>();

/** SIGKILLs every process started here and still running (afterEach/afterAll). */
export function killAll(): void {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
}

/**
 * Spawns `command args` in `cwd` with `env` over a clean environment (none of
 * the server's variables from this process: DATABASE_URL, DATA_DIR, PORT,
 * AUTH_*, ...) and LOG_LEVEL=info. `input` is written to its stdin; `ipc`
 * opens a message channel (child.send).
 */
export function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, options: { input?: string; ipc?: boolean } = {}): Proc {
  const { input, ipc = false } = options;
  const childEnv: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info" };
  for (const name of Object.keys(childEnv)) {
    if (/^(DATABASE_URL|DATABASE_DIRECT_URL|DATA_DIR|PORT|HOST|METRICS_PORT|DASHBOARD_PORT|AUTH_|TLS_|OTEL_|npm_)/.test(name)) delete childEnv[name];
  }
  Object.assign(childEnv, env);
  const began = Date.now();
  const stdio = [input === undefined ? "ignore" : "pipe", "pipe", "pipe", ...(ipc ? ["ipc"] : [])] as ("ignore" | "pipe" | "ipc")[];
  const child = spawn(command, args, { cwd, env: childEnv, stdio });
  if (input !== undefined) child.stdin!.end(input);
  running.add(child);
  const logs: Record<string, unknown>[] = [];
  const garbage: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  let alive = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>((resolve) =>
    child.once("exit", (code, signal) => {
      alive = false;
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
  // What it said, for failure messages: the log lines without their (long) stacks.
  const describe = () =>
    `\nstdout:\n  ${[...logs.map((l) => JSON.stringify(l).slice(0, 400)), ...garbage].join("\n  ")}\nstderr:\n  ${stderr.join("").slice(-3000)}`;
  return {
    child,
    logs,
    garbage,
    stderr: () => stderr.join(""),
    exited,
    get alive() {
      return alive;
    },
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
