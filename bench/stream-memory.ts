// Benchmark: StreamIncompleteWorkflows over many incomplete executions reaches
// the client complete and in FIFO order, while the server's memory does not
// grow with the row count (the server reads keyset batches).
//
//   npx tsx bench/stream-memory.ts                    # PostgreSQL (DATABASE_URL or postgres://postgres@127.0.0.1:5432/test)
//   npx tsx bench/stream-memory.ts --pglite           # embedded PGlite, in a temporary DATA_DIR
//   npx tsx bench/stream-memory.ts --rows=1000,50000  # other sizes (default 10000,100000)
//
// For each size: a fresh tenant gets N executions in one INSERT ... SELECT
// FROM generate_series (5% terminal, which must not be streamed; each with a
// ~1.4 KB context), then the real server (src/main.ts, with npm start's node
// flags, on which its memory depends) is started as its own
// process, so that its RSS is measured apart from this client's, and sampled
// from /proc/<pid>/status every 50 ms while the client streams. The inserted
// rows are deleted at the end (PGlite: the temporary directory is removed).
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PGlite, types as pgliteTypes } from "@electric-sql/pglite";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import knexFactory, { type Knex } from "knex";
import { WorkflowStateService, WorkflowStatus } from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import ClientPgLite from "knex-pglite";
import { createDatabase, migrate } from "../src/db/database.js";
import { migrationSource } from "../src/db/migrations/index.js";
import { silentLogger } from "../src/logging/logger.js";
import { TENANT_HEADER } from "../src/tenancy/tenant-interceptor.js";
import { startNodeFlags } from "../test/support/start-command.js";
import { freePort } from "./lib/processes.js";
import { BULK_STATEMENT_TIMEOUT_MS, CONTEXT, seedExecutions } from "./lib/seed.js";

const root = path.resolve(import.meta.dirname, "..");
const args = process.argv.slice(2);
const usePglite = args.includes("--pglite");
const sizes = (args.find((a) => a.startsWith("--rows="))?.slice("--rows=".length) ?? "10000,100000")
  .split(",")
  .map((s) => Number(s.replace(/_/g, "")));
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const SAMPLE_MS = 50;

interface Row {
  /** Rows inserted. */
  rows: number;
  /** Incomplete rows, the ones the stream must return. */
  expected: number;
  streamed: number;
  seconds: number;
  rssBeforeKb: number;
  rssPeakKb: number;
  hwmKb: number;
  samples: number;
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100/s)
}

/** Bytes of a /proc/<pid>/status field, in kB (undefined once the process is gone). */
function procStatusKb(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The bench's own connection to the database, for loading and cleaning up.
 * On PGlite, Knex is given one PGlite instance directly rather than through
 * src/db/database.ts: its connection *function* is called again by Knex on
 * the first acquire, which opens a second, never closed PGlite on the same
 * directory and leaves a directory the next process (our server) cannot
 * open. The schema is the server's: the same migrations.
 */
function openDatabase(dataDir: string | undefined): Knex {
  if (dataDir === undefined) return createDatabase({ databaseUrl, poolMax: 2, logger: silentLogger, statementTimeoutMs: BULK_STATEMENT_TIMEOUT_MS });
  const pglite = new PGlite(dataDir, { parsers: { [pgliteTypes.TIMESTAMPTZ]: (v: string) => v, [pgliteTypes.INT8]: (v: string) => v } });
  return knexFactory({
    client: ClientPgLite as unknown as typeof Knex.Client,
    dialect: "postgres",
    connection: { pglite } as object as Knex.StaticConnectionConfig,
    migrations: { migrationSource, tableName: "knex_migrations" },
  });
}

/** The ids the stream must return, in order: the incomplete rows by (started_at, execution_id). */
function* expectedIds(n: number): Generator<string> {
  for (let i = 1; i <= n; i++) if (i % 20 !== 0) yield `exec-${String(i).padStart(7, "0")}`;
}

/** Starts src/main.ts and resolves once it logs "serving". */
async function startServer(port: number, dataDir: string | undefined): Promise<ChildProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, HOST: "127.0.0.1", PORT: String(port), LOG_LEVEL: "info" };
  delete env.DATABASE_URL;
  if (dataDir === undefined) env.DATABASE_URL = databaseUrl;
  else env.DATA_DIR = dataDir;
  // node itself (not the npx/tsx wrapper), so that the pid is the server's.
  const child = spawn(process.execPath, [...startNodeFlags(), "--import", "tsx", "src/main.ts"], { cwd: root, env, stdio: ["ignore", "pipe", "inherit"] });
  running = child;
  let out = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start within 60 s: ${out}`));
    }, 60_000);
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      if (out.includes('"msg":"serving')) {
        clearTimeout(timer);
        out = "";
        resolve();
      } else if (out.length > 100_000) {
        out = out.slice(-10_000);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with code ${code} before serving: ${out}`));
    });
  });
  return child;
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** One measurement: load N rows, start a server, stream them, verify, sample the server's RSS. */
async function measure(n: number): Promise<Row> {
  const dataDir = usePglite ? fs.mkdtempSync(path.join(os.tmpdir(), "stream-memory-")) : undefined;
  const tenant = randomUUID();
  let server: ChildProcess | undefined;
  const knex = openDatabase(dataDir);
  let knexOpen = true;
  try {
    await migrate(knex);
    const loadStart = performance.now();
    await seedExecutions(knex, tenant, n, 20);
    console.error(`N=${n}: loaded in ${((performance.now() - loadStart) / 1000).toFixed(1)} s`);
    if (dataDir !== undefined) {
      await knex.destroy(); // PGlite: one process at a time
      knexOpen = false;
    }

    if (interrupted) throw new Error("interrupted");
    const port = await freePort();
    server = await startServer(port, dataDir);
    running = server;
    const pid = server.pid!;
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // let startup garbage settle
    const rssBeforeKb = procStatusKb(pid, "VmRSS")!;

    let rssPeakKb = rssBeforeKb;
    let samples = 0;
    const sampler = setInterval(() => {
      const rss = procStatusKb(pid, "VmRSS");
      if (rss === undefined) return;
      samples++;
      rssPeakKb = Math.max(rssPeakKb, rss);
    }, SAMPLE_MS);

    const client = createClient(
      WorkflowStateService,
      createGrpcTransport({
        baseUrl: `http://127.0.0.1:${port}`,
        interceptors: [(next) => (req) => (req.header.set(TENANT_HEADER, tenant), next(req))],
      }),
    );
    const serverCpuBefore = cpuSeconds(pid);
    const clientCpuBefore = process.cpuUsage();
    const expected = expectedIds(n);
    const expectedCount = n - Math.floor(n / 20);
    let streamed = 0;
    const start = performance.now();
    try {
      for await (const res of client.streamIncompleteWorkflows({})) {
        const want = expected.next();
        const got = res.execution!;
        if (want.done || got.executionId !== want.value) {
          throw new Error(`message ${streamed}: got ${got.executionId}, expected ${want.done ? "the end of the stream" : want.value}`);
        }
        if (got.status === WorkflowStatus.COMPLETED) throw new Error(`terminal execution ${got.executionId} streamed`);
        streamed++;
      }
    } finally {
      clearInterval(sampler);
    }
    const seconds = (performance.now() - start) / 1000;
    const clientCpu = process.cpuUsage(clientCpuBefore);
    console.error(
      `N=${n}: streamed in ${seconds.toFixed(1)} s; CPU during the stream: server ${(cpuSeconds(pid) - serverCpuBefore).toFixed(1)} s, ` +
        `client ${((clientCpu.user + clientCpu.system) / 1e6).toFixed(1)} s`,
    );
    if (streamed !== expectedCount) throw new Error(`streamed ${streamed} executions, expected ${expectedCount}`);
    const hwmKb = procStatusKb(pid, "VmHWM")!;
    await stopServer(server);
    return { rows: n, expected: expectedCount, streamed, seconds, rssBeforeKb, rssPeakKb, hwmKb, samples };
  } finally {
    if (server !== undefined) await stopServer(server);
    if (dataDir === undefined) {
      const deleted = await knex("workflow_executions").where("tenant_id", tenant).delete();
      console.error(`N=${n}: cleaned up ${deleted} rows`);
    }
    if (knexOpen) await knex.destroy();
    if (dataDir !== undefined) fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

// Ctrl-C (or a timeout's SIGTERM): stop the server; the stream then fails and
// measure()'s finally still deletes the rows.
let interrupted = false;
let running: ChildProcess | undefined;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    interrupted = true;
    running?.kill("SIGKILL");
  });
}

const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

const results: Row[] = [];
for (const n of sizes) results.push(await measure(n));

const backend = usePglite ? "PGlite (embedded)" : "PostgreSQL";
console.log(`\nStreamIncompleteWorkflows, ${backend}, server STREAM_BATCH_SIZE default (100), context ~${(JSON.stringify(CONTEXT).length / 1024).toFixed(1)} KB/row, RSS sampled every ${SAMPLE_MS} ms\n`);
console.log("| rows (5% terminal) | streamed, in order | rows/s | server RSS before streaming | server peak RSS | growth | server VmHWM |");
console.log("|---:|---:|---:|---:|---:|---:|---:|");
for (const r of results) {
  console.log(
    `| ${r.rows.toLocaleString("en")} | ${r.streamed.toLocaleString("en")} | ${Math.round(r.streamed / r.seconds).toLocaleString("en")} | ${mb(r.rssBeforeKb)} | ${mb(r.rssPeakKb)} | +${mb(r.rssPeakKb - r.rssBeforeKb)} | ${mb(r.hwmKb)} |`,
  );
}
if (results.length >= 2) {
  const [small, large] = [results[0]!, results[results.length - 1]!];
  const growth = (r: Row) => r.rssPeakKb - r.rssBeforeKb;
  console.log(
    `\n${(large.rows / small.rows).toFixed(0)}x the rows: peak growth ${mb(growth(small))} -> ${mb(growth(large))} ` +
      `(${(growth(large) / Math.max(1, growth(small))).toFixed(1)}x); ${large.samples} RSS samples during the largest stream.`,
  );
}
