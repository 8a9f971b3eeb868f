// Child processes of the benchmark, each pinned to one core with taskset(1):
// servers and raw-pg baselines on SERVER_CORE, load generators on LOAD_CORE,
// so that the two never compete for one core (PostgreSQL's backends run on
// either: the machine has two).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http2 from "node:http2";
import * as path from "node:path";
import { startNodeFlags } from "../../test/support/start-command.js";
// A free TCP port on 127.0.0.1: the tests' helper (test/support/ imports nothing of bench/).
export { freePort } from "../../test/support/processes.js";

export const SERVER_CORE = 0;
export const LOAD_CORE = 1;
export const ROOT = path.resolve(import.meta.dirname, "../..");
const TSX = path.join(ROOT, "node_modules/.bin/tsx");
// A long-running .ts process (a baseline server) runs as one node process with
// tsx's loader, not under the tsx CLI (which would fork a second process), so
// that its pid is the one whose CPU time and memory /proc reports.
const NODE_WITH_TSX = [process.execPath, "--import", "tsx"];

/** Whether a program is on PATH. */
export function have(program: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${program}`], { stdio: "ignore" }).status === 0;
}

/**
 * Starts `node <script>` (a .ts script through tsx; a built .js entry with the
 * node flags of npm start, as deployed) pinned to `core`, with `nodeOptions`
 * before the script; stdout and stderr go to `logFile`.
 */
export function startPinned(core: number, script: string, args: string[], env: NodeJS.ProcessEnv, logFile: string, nodeOptions: string[] = []): ChildProcess {
  const out = fs.openSync(logFile, "a");
  const runner = script.endsWith(".ts") ? [...NODE_WITH_TSX, ...nodeOptions, script] : [process.execPath, ...startNodeFlags(), ...nodeOptions, script];
  const child = spawn("taskset", ["-c", String(core), ...runner, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", out, out] });
  fs.closeSync(out);
  return child;
}

/** Runs `script` pinned to `core` to completion and returns the JSON it printed last on stdout. */
export async function runPinnedJson<T>(core: number, script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<T> {
  const runner = script.endsWith(".ts") ? [TSX, script] : [process.execPath, script];
  const child = spawn("taskset", ["-c", String(core), ...runner, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  return collectJson<T>(child, path.basename(script));
}

/** Runs a program pinned to `core` and returns its stdout. */
export async function runPinned(core: number, program: string, args: string[]): Promise<string> {
  const child = spawn("taskset", ["-c", String(core), program, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) throw new Error(`${program} exited with ${code}: ${err || out}`);
  return out;
}

async function collectJson<T>(child: ChildProcess, name: string): Promise<T> {
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  const last = out.trim().split("\n").pop() ?? "";
  if (code !== 0 || !last.startsWith("{")) throw new Error(`${name} exited with ${code}: ${err.trim() || out.trim()}`);
  return JSON.parse(last) as T;
}

/**
 * Waits until the process `child` started serves HTTP/2 on 127.0.0.1:port:
 * a request is answered (any status: our server's health, a baseline's
 * UNIMPLEMENTED), and the listening socket on that port is one of `child`'s
 * own. A TCP connect alone is not enough: our server binds and releases its
 * port once early in its startup (assertPortsFree in src/lifecycle/startup.ts,
 * so that a port in use stops it at once), and a connect landing in that
 * instant reported a server that was still a second or two from listening;
 * the load generator then found the port closed and the benchmark's clean-up
 * SIGTERM reached the server in its startup (the flake of December 5). The
 * ownership check rules out another process that took the port freePort gave.
 */
export async function waitForServer(port: number, child: ChildProcess, logFile: string, ms = 30_000, pollMs = 100): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`process ${child.pid} exited with ${child.exitCode ?? child.signalCode} before serving on port ${port}; see ${logFile}`);
    }
    if (await answersHttp2(port)) {
      if (listensOn(child.pid!, port)) return;
      throw new Error(`port ${port} is answered by a process other than the one started (pid ${child.pid}); see ${logFile}`);
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  throw new Error(`process ${child.pid} does not serve on port ${port} after ${ms} ms; see ${logFile}`);
}

/** Whether an HTTP/2 server on 127.0.0.1:port answers a gRPC health check with response headers (any status). */
function answersHttp2(port: number, ms = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const done = (answered: boolean) => {
      clearTimeout(timer);
      session.destroy();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), ms);
    session.on("error", () => done(false));
    session.on("close", () => done(false));
    const request = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
    request.on("response", () => done(true));
    request.on("error", () => done(false));
    request.end(Buffer.alloc(5)); // an empty message, enveloped
  });
}

/** Whether process `pid` holds the socket listening on TCP `port` (from /proc/net/tcp{,6} and /proc/PID/fd). */
export function listensOn(pid: number, port: number): boolean {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!fs.existsSync(table)) continue;
    // sl local_address rem_address st ... inode: state 0A is LISTEN, the inode is the tenth field.
    for (const row of fs.readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = row.trim().split(/\s+/);
      if (f[1]?.endsWith(hexPort) && f[3] === "0A" && f[9] !== undefined) inodes.add(f[9]);
    }
  }
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // gone
  }
  return fds.some((fd) => {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      return inode !== undefined && inodes.has(inode);
    } catch {
      return false; // closed meanwhile
    }
  });
}

/** Stops a child with SIGTERM (SIGKILL after 15 s) and waits for it. */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Resident set size now and at its peak (VmHWM), in MB, from /proc (the pid of taskset's exec'd node). */
export function memoryOf(pid: number): { rssMb: number; peakMb: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
}

const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/**
 * CPU time (user + system, seconds) a process has used so far, from
 * /proc/PID/stat: unlike a rate, it does not depend on who else had the cores.
 */
export function cpuSecondsOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at field 3; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
