// The real entry point (src/main.ts) as a child process, the way it is
// deployed: it serves once it logs "serving", logs one JSON line per RPC,
// exits with code 0 on SIGTERM and on SIGINT after closing the database, and
// what it acknowledged is still there when it starts again on the same data.
// On PGlite the data lives in a fresh DATA_DIR; with TEST_DATABASE_URL the
// child uses that PostgreSQL database (DATABASE_URL).
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import { freePort, onLines } from "./failures/support/main-process.js";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName, postgresEnv } from "./support/backend.js";
import { workflowClient } from "./support/clients.js";
import { newTenant } from "./support/server.js";

const root = path.resolve(import.meta.dirname, "..");
const SERVING = "serving gRPC, gRPC-Web and Connect over h2c";
const SAVE = "orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution";
const GET = "orchestration.state.v1.WorkflowStateService/GetWorkflowExecution";

/** A running `node --import tsx src/main.ts`. */
interface MainProcess {
  child: ChildProcess;
  port: number;
  baseUrl: string;
  /** Every stdout line, parsed (a line that is not JSON fails the test at exit). */
  logs: Record<string, unknown>[];
  /** stdout lines that are not JSON objects. */
  garbage: string[];
  stderr: string[];
  /** Resolves with the exit code and signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let dataDir: string;
const running = new Set<ChildProcess>();

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "orchestrator-state-main-"));
});
afterEach(() => {
  // A test that failed part way must not leave its server running.
  for (const child of running) child.kill("SIGKILL");
  running.clear();
});
afterAll(async () => {
  await fs.rm(dataDir, { recursive: true, force: true });
});

/** A port nobody listens on right now (PORT=0 would hide the port from us). */
/** Starts the entry point and waits for its "serving" line. */
async function startMain(): Promise<MainProcess> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, HOST: "127.0.0.1", PORT: String(port), LOG_LEVEL: "info" };
  delete env.DATABASE_URL;
  if (process.env.TEST_DATABASE_URL) Object.assign(env, postgresEnv());
  else env.DATA_DIR = dataDir;
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);

  const logs: Record<string, unknown>[] = [];
  const garbage: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  let serving: () => void = () => {};
  const served = new Promise<void>((resolve) => (serving = resolve));
  onLines(child.stdout!, (line) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      garbage.push(line);
      return;
    }
    logs.push(parsed as Record<string, unknown>);
    if ((parsed as { msg?: unknown }).msg === SERVING) serving();
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr.push(chunk));

  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    served.then(() => "serving"),
    exited.then(({ code, signal }) => `exited early (code ${code}, signal ${signal})`),
    // An embedded PGlite opens and migrates on the server thread: about 25 s on a loaded machine (through tsx).
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve("no serving line within 90 s"), 90_000))),
  ]);
  clearTimeout(timer);
  if (outcome !== "serving") {
    child.kill("SIGKILL");
    // The log lines' messages and errors, without their (long) stacks.
    const said = logs.map((l) => {
      const error = l.error as { message?: unknown } | undefined;
      return `${String(l.msg)}${error?.message === undefined ? "" : `: ${String(error.message)}`}${typeof l.detail === "string" ? `: ${l.detail.split("\n")[0]}` : ""}`;
    });
    throw new Error(
      `src/main.ts did not start: ${outcome}\nlogs:\n  ${[...said, ...garbage].join("\n  ")}\nstderr (last lines, cut at 300 characters):\n  ${stderr
        .join("")
        .split("\n")
        .slice(-20)
        .map((line) => line.slice(0, 300))
        .join("\n  ")}`,
    );
  }
  return { child, port, baseUrl: `http://127.0.0.1:${port}`, logs, garbage, stderr, exited };
}

/** Sends `signal` and waits for the exit (at most 15 s). */
async function stopMain(main: MainProcess, signal: NodeJS.Signals) {
  main.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    main.exited,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no exit within 15 s of ${signal}`)), 15_000))),
  ]);
  clearTimeout(timer);
  return result;
}

// One tenant and execution for the whole file: the second test reads what the first wrote.
const tenant = newTenant();
const executionId = "order-42";
let etag = "";

describe(`src/main.ts as a process on ${backendName}`, () => {
  it("serves calls, logs one JSON rpc line per call, and exits 0 on SIGTERM after closing the database", async () => {
    const main = await startMain();
    expect(main.logs.find((l) => l.msg === SERVING)).toMatchObject({ port: main.port, host: "127.0.0.1" });

    const client = workflowClient(main.baseUrl, tenant);
    const saved = await client.saveWorkflowExecution({
      execution: {
        executionId,
        workflowName: "fulfil-order",
        status: WorkflowStatus.RUNNING,
        context: { orderId: 42, priority: "high" },
        labels: { team: "fulfilment" },
      },
    });
    etag = saved.execution!.etag;
    const got = await client.getWorkflowExecution({ executionId });
    expect(got.execution).toEqual(saved.execution);

    const { code, signal } = await stopMain(main, "SIGTERM");
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(main.garbage).toEqual([]);
    const rpcs = main.logs.filter((l) => l.msg === "rpc");
    expect(rpcs).toHaveLength(2);
    expect(rpcs.map((l) => l.procedure)).toEqual([SAVE, GET]);
    for (const line of rpcs) {
      expect(line).toMatchObject({ level: "info", tenant, code: "OK" });
      expect(line.durationMs).toEqual(expect.any(Number));
      expect(line.durationMs as number).toBeGreaterThanOrEqual(0);
    }
    const msgs = main.logs.map((l) => l.msg);
    expect(main.logs.find((l) => l.msg === "signal received")).toMatchObject({ signal: "SIGTERM" });
    expect(msgs.indexOf("server stopped")).toBeGreaterThan(msgs.indexOf("signal received"));
    expect(msgs.at(-1)).toBe("database closed; exiting");
  }, 180_000);

  it("still has the acknowledged execution after a restart on the same data, and exits 0 on SIGINT", async () => {
    expect(etag).not.toBe(""); // written by the previous test
    const main = await startMain();
    const got = await workflowClient(main.baseUrl, tenant).getWorkflowExecution({ executionId });
    expect(got.execution).toMatchObject({
      executionId,
      workflowName: "fulfil-order",
      status: WorkflowStatus.RUNNING,
      context: { orderId: 42, priority: "high" },
      labels: { team: "fulfilment" },
      etag,
    });

    const { code, signal } = await stopMain(main, "SIGINT");
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(main.garbage).toEqual([]);
    expect(main.logs.find((l) => l.msg === "signal received")).toMatchObject({ signal: "SIGINT" });
    expect(main.logs.map((l) => l.msg).at(-1)).toBe("database closed; exiting");
  }, 180_000);
});
