import { execFile, spawn } from "node:child_process";
import * as path from "node:path";
import { startServerProcess, type ServerProcess } from "../../support/built-server.js";

/** The repository root. */
export const root = path.resolve(import.meta.dirname, "../../..");

/**
 * The Python with Debian's python3-grpcio: /usr/bin/python3 unless PYTHON says
 * otherwise (a python3 earlier on PATH, e.g. pyenv's, may lack grpcio).
 */
export const python = process.env.PYTHON ?? "/usr/bin/python3";

/** Runs a command to completion; rejects with its output when it fails. */
export function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd: options.cwd ?? root, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 << 20, env: { ...process.env, ...options.env } },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${command} ${args.join(" ")} failed: ${error.message}\nstdout:\n${stdout.slice(-4000)}\nstderr:\n${stderr.slice(-4000)}`));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
  });
}

/** The JSON values of a text holding several, one after the other (buf curl prints one per message). */
export function parseJsonSequence(text: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === "{" || c === "[") {
      if (depth++ === 0) start = i;
    } else if (c === "}" || c === "]") {
      if (--depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return values;
}

/** What `buf curl` prints for one call over gRPC (every response message), acting for a tenant. */
export async function bufCurl(baseUrl: string, tenant: string, method: string, body: unknown): Promise<unknown[]> {
  const { stdout } = await run("node_modules/.bin/buf", [
    "curl", "--protocol", "grpc", "--http2-prior-knowledge",
    "-H", `x-tenant-id: ${tenant}`,
    "-d", JSON.stringify(body),
    `${baseUrl}/orchestration.state.v1.${method}`,
  ]);
  return parseJsonSequence(stdout);
}

/** The first `count` messages `buf curl` prints for a stream that does not end by itself. */
export function bufCurlFirst(baseUrl: string, tenant: string, method: string, body: unknown, count: number): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const child = spawn("node_modules/.bin/buf", [
      "curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "-H", `x-tenant-id: ${tenant}`,
      "-d", JSON.stringify(body),
      `${baseUrl}/orchestration.state.v1.${method}`,
    ], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (parseJsonSequence(stdout).length >= count) child.kill("SIGTERM");
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("exit", () => {
      clearTimeout(timer);
      const messages = parseJsonSequence(stdout);
      if (messages.length >= count) resolve(messages.slice(0, count));
      else reject(new Error(`buf curl ${method} printed ${messages.length} of ${count} messages\nstderr:\n${stderr}`));
    });
  });
}

/**
 * The built server (`npm run test:examples` builds first), as `npm start` runs
 * it, on an in-memory PGlite.
 */
export function startBuiltServer(): Promise<ServerProcess> {
  return startServerProcess({ DATA_DIR: "memory://" }, { entry: "dist/src/main.js" });
}
