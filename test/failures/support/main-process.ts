import { type ChildProcess, spawn } from "node:child_process";
import * as net from "node:net";
import * as path from "node:path";

const root = path.resolve(import.meta.dirname, "../../..");
const SERVING = "serving gRPC, gRPC-Web and Connect over h2c";

/** A running server process (src/main.ts, or another entry under the repository). */
export interface ServerProcess {
  child: ChildProcess;
  port: number;
  baseUrl: string;
  /** Every stdout line that parsed as JSON. */
  logs: Record<string, unknown>[];
  stderr: string[];
  /** Resolves once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Whether the process is still running. */
  readonly alive: boolean;
}

const running = new Set<ChildProcess>();

/** SIGKILLs every process started here and still running (for afterEach/afterAll). */
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

export function killAll(): void {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Starts `node --import tsx <entry>` with `env` added to this process's
 * environment (DATABASE_URL and DATA_DIR removed first), HOST=127.0.0.1 and a
 * free PORT, and waits for its "serving" log line (90 s at most: an embedded PGlite opens and migrates on the server thread, which takes long on a loaded machine).
 */
export async function startServerProcess(
  env: NodeJS.ProcessEnv,
  options: { entry?: string; nodeArgs?: string[]; ipc?: boolean } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info" };
  delete childEnv.DATABASE_URL;
  delete childEnv.DATA_DIR;
  Object.assign(childEnv, { HOST: "127.0.0.1", PORT: String(port) }, env);
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), "--import", "tsx", options.entry ?? "src/main.ts"],
    { cwd: root, env: childEnv, stdio: ["ignore", "pipe", "pipe", ...(options.ipc ? (["ipc"] as const) : [])] },
  );
  running.add(child);
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  let alive = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      alive = false;
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  let serving: () => void = () => {};
  const served = new Promise<void>((resolve) => (serving = resolve));
  onLines(child.stdout!, (line) => {
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      logs.push(parsed);
      if (parsed.msg === SERVING) serving();
    } catch {
      // not JSON: ignored here (test/main-process.test.ts checks the format)
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr.push(chunk));

  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    served.then(() => "serving"),
    exited.then(({ code, signal }) => `exited early (code ${code}, signal ${signal})`),
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve("no serving line within 90 s"), 90_000))),
  ]);
  clearTimeout(timer);
  if (outcome !== "serving") {
    child.kill("SIGKILL");
    const said = logs.map((l) => `${String(l.msg)} ${JSON.stringify(l.error ?? l.detail ?? "")}`.slice(0, 300));
    throw new Error(`${options.entry ?? "src/main.ts"} did not start: ${outcome}\nlogs:\n  ${said.join("\n  ")}\nstderr:\n  ${stderr.join("").slice(-3000)}`);
  }
  return {
    child,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    logs,
    stderr,
    exited,
    get alive() {
      return alive;
    },
  };
}
