// `npm run bench`: every workload of docs/performance.md against the real
// server on PostgreSQL, side by side in the same run with its baselines: the
// peer (a bare grpc-js + pg service, B1-B4) and raw pg (the limit).
//
//   npm run bench                                   # DATABASE_URL or postgres://postgres@127.0.0.1:5432/test
//   npm run bench -- --runs=3 --seconds=5 --only=B0,B1 --b5-rows=1000000 --b6-rows=1000000
//
// Servers and raw-pg baselines run pinned to core 0, load generators to core 1
// (bench/lib/processes.ts). Each workload is measured `runs` times (default 3),
// ours and its baselines back to back within a run; the median run is
// reported. Results go to bench/results/latest.json and latest.md, and the
// table is printed. Rows the benchmark writes belong to fresh tenants and are
// deleted at the end.
import { randomUUID, createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ChildProcess } from "node:child_process";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { WorkflowStateService } from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createDatabase, migrate } from "../src/db/database.js";
import { silentLogger } from "../src/logging/logger.js";
import { TENANT_HEADER } from "../src/tenancy/tenant-interceptor.js";
import { BULK_STATEMENT_TIMEOUT_MS, seedExecutions } from "./lib/seed.js";
import {
  cpuSecondsOf, freePort, have, LOAD_CORE, memoryOf, ROOT, runPinned, runPinnedJson, SERVER_CORE, startPinned, stop, waitForPort,
} from "./lib/processes.js";
import { type Measurement, medianRun, percentile } from "./lib/stats.js";
import { B3_EXECUTIONS, execution, type UnaryWorkload, paths } from "./workloads.js";

const USAGE = `usage: npm run bench -- [--runs=3] [--seconds=5] [--warmup=1] [--b5-rows=1000000] [--b6-rows=1000000]
                        [--only=B0,B1,B2,B3,B4,B5,B6,RLS] [--out=bench/results]
The server and the baselines use DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).`;
const OPTIONS = ["runs", "seconds", "warmup", "b5-rows", "b6-rows", "only", "out"];
const args = process.argv.slice(2);
// A mistyped or unknown option (--help included) must not start a full run,
// which takes tens of minutes and loads two million rows.
if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
for (const a of args) {
  if (!OPTIONS.some((name) => a.startsWith(`--${name}=`))) {
    console.error(`bench: unknown option ${JSON.stringify(a)}\n${USAGE}`);
    process.exit(2);
  }
}
const arg = (name: string, fallback: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const runs = Number(arg("runs", "3"));
const seconds = Number(arg("seconds", "5"));
const warmupSeconds = Number(arg("warmup", "1"));
const b5Rows = Number(arg("b5-rows", "1000000").replace(/_/g, ""));
const b6Rows = Number(arg("b6-rows", "1000000").replace(/_/g, ""));
const only = new Set(arg("only", "B0,B1,B2,B3,B4,B5,B6,RLS").split(","));
const outDir = path.resolve(ROOT, arg("out", "bench/results"));
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-bench-"));
const INFLIGHT = 32;
const B2_INFLIGHT = 4;
/** The server's pool size (its default); the raw-pg baselines get the same. */
const POOL_MAX = 10;
const MARK_ROWS = 100_000;

/** One line of the results: our measurement and its baseline's, as medians over the runs. */
interface Result {
  workload: string;
  what: string;
  ours: Measurement;
  baselineName: string;
  baseline: Measurement;
  ratio: number;
  goal: number;
  unit: "calls/s" | "rows/s";
}

const tenants: string[] = [];
const newTenant = () => {
  const t = randomUUID();
  tenants.push(t);
  return t;
};

// ---------------------------------------------------------------- targets

/** Starts our server (the built dist/src/main.js, as `npm start` runs it) on PostgreSQL, pinned to the server core. */
async function startOurs(env: NodeJS.ProcessEnv = {}): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const log = path.join(logDir, "server.log");
  const child = startPinned(SERVER_CORE, path.join(ROOT, "dist/src/main.js"), [], {
    HOST: "127.0.0.1",
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_MAX: String(POOL_MAX),
    ...env,
  }, log);
  await waitForPort(port, child, log);
  return { url: `http://127.0.0.1:${port}`, child };
}

async function startBaselineServer(script: string, env: NodeJS.ProcessEnv = {}): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const log = path.join(logDir, `${path.basename(script, ".ts")}.log`);
  const child = startPinned(SERVER_CORE, path.join(ROOT, "bench/baselines", script), [String(port)], env, log);
  await waitForPort(port, child, log);
  return { url: `http://127.0.0.1:${port}`, child };
}

// ---------------------------------------------------------------- load

/**
 * Drives `url` with the Node load generator (bench/load/grpc-load.ts) from the
 * load core. With the server's `pid`, the measurement also gets the server's
 * CPU time per call (user + system, microseconds): its CPU time while the
 * generator ran, divided by every call the generator completed.
 */
async function nodeLoad(url: string, workload: UnaryWorkload, headers: Record<string, string>, inflight = INFLIGHT, secs = seconds, pid?: number): Promise<Measurement> {
  const cpuBefore = pid === undefined ? 0 : cpuSecondsOf(pid);
  const m = await runPinnedJson<Measurement & { errorsByStatus: Record<string, number>; allCalls: number }>(LOAD_CORE, "bench/load/grpc-load.ts", [
    JSON.stringify({ url, workload, inflight, seconds: secs, warmupSeconds, headers }),
  ]);
  if (m.errors > 0) throw new Error(`${workload} against ${url}: ${m.errors} calls failed: ${JSON.stringify(m.errorsByStatus)}`);
  if (pid !== undefined) m.extra = { ...m.extra, cpuUsPerCall: ((cpuSecondsOf(pid) - cpuBefore) * 1e6) / m.allCalls };
  return m;
}

const useH2load = have("h2load");

/**
 * Drives a B0 target with h2load (nghttp2's C load generator): one connection,
 * 32 streams in flight. A Node generator tops out below bare grpc-js on one
 * core, so it would understate the gap; without h2load the Node one is used
 * and the report says so. h2load counts any HTTP 200 as a success, and a
 * failed gRPC call is an HTTP 200 too: a short Node run checks the grpc-status
 * of the same call first.
 */
async function b0Load(url: string, headers: Record<string, string> = {}): Promise<Measurement> {
  await nodeLoad(url, "B0", headers, 4, 0.3);
  if (!useH2load) return nodeLoad(url, "B0", headers);
  const body = path.join(logDir, "b0-body.bin");
  fs.writeFileSync(body, Buffer.alloc(5)); // an empty HealthCheckRequest, enveloped
  const perRequest = path.join(logDir, "h2load-requests.tsv");
  fs.rmSync(perRequest, { force: true });
  const out = await runPinned(LOAD_CORE, "h2load", [
    "-c", "1", "-m", String(INFLIGHT), "-D", String(seconds), `--warm-up-time=${warmupSeconds}`,
    "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers",
    ...Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    `--log-file=${perRequest}`, `${url}${paths.B0}`,
  ]);
  const done = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  if (done === null) throw new Error(`unexpected h2load output: ${out}`);
  // Per request: start (µs since epoch), HTTP status, duration (µs).
  const durations = fs.readFileSync(perRequest, "utf8").trim().split("\n").map((line) => Number(line.split("\t")[2]) / 1000);
  const sorted = Float64Array.from(durations).sort();
  return { rate: Number(done[4]) / seconds, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), errors: Number(done[5]) + Number(done[6]) };
}

/** The raw-pg baseline of a workload, pinned to the server core (it plays the server's part). */
async function pgBaseline(workload: Exclude<UnaryWorkload, "B0">, tenant: string, concurrency = INFLIGHT): Promise<Measurement> {
  const m = await runPinnedJson<Measurement>(SERVER_CORE, "bench/baselines/pg-workloads.ts", [
    JSON.stringify({ databaseUrl, tenant, workload, concurrency, poolMax: POOL_MAX, seconds, warmupSeconds }),
  ]);
  if (m.errors > 0) throw new Error(`raw pg ${workload}: ${m.errors} statements failed`);
  return m;
}

// ---------------------------------------------------------------- workloads

type Runs = Record<string, Measurement[]>;
const measured: Runs = {};
const record = (key: string, m: Measurement) => (measured[key] ??= []).push(m);

async function withServer<T>(env: NodeJS.ProcessEnv, fn: (url: string, pid: number) => Promise<T>): Promise<T> {
  const s = await startOurs(env);
  try {
    return await fn(s.url, s.child.pid!);
  } finally {
    await stop(s.child);
  }
}

async function runB0(): Promise<void> {
  await withServer({}, async (url) => record("B0 ours", await b0Load(url)));
  for (const script of ["grpc-js-health.ts", "http2-health.ts"]) {
    const s = await startBaselineServer(script);
    try {
      record(`B0 ${script}`, await b0Load(s.url));
    } finally {
      await stop(s.child);
    }
  }
  // Authentication: the same call with an API key required (health made non-public).
  const key = randomUUID() + randomUUID();
  const keys = JSON.stringify([{ id: "bench", tenant: randomUUID(), sha256: createHash("sha256").update(key).digest("hex") }]);
  await withServer({ AUTH_KEYS: keys, AUTH_PUBLIC_HEALTH: "false" }, async (url) =>
    record("B0 ours+auth", await b0Load(url, { authorization: `Bearer ${key}` })),
  );
}

/** Measures B1-B4 against a server at `url` (ours or the peer), with its CPU per call; `name` names the records. */
async function measureDatabaseWorkloads(url: string, pid: number, name: "ours" | "peer"): Promise<void> {
  const load = (w: UnaryWorkload, tenant: string, inflight = INFLIGHT) => nodeLoad(url, w, { [TENANT_HEADER]: tenant }, inflight, seconds, pid);
  if (only.has("B1")) record(`B1 ${name}`, await load("B1", newTenant()));
  if (only.has("B2")) record(`B2 ${name}`, await load("B2", newTenant(), B2_INFLIGHT));
  if (only.has("B3")) {
    const tenant = newTenant();
    // Every execution exists before the clock starts: saves update, gets find.
    await saveAllExecutions(url, tenant);
    record(`B3-save ${name}`, await load("B3-save", tenant));
    record(`B3-get ${name}`, await load("B3-get", tenant));
  }
  if (only.has("B4")) record(`B4 ${name}`, await load("B4", newTenant()));
}

/** B1-B4 on our server, on the peer (bench/baselines/peer-server.ts) and as raw pg, back to back. */
async function runDatabaseWorkloads(): Promise<void> {
  const pgTenantB3 = newTenant();
  await withServer({}, async (url, pid) => {
    await measureDatabaseWorkloads(url, pid, "ours");
    if (only.has("B3")) await saveAllExecutions(url, pgTenantB3);
  });
  const peer = await startBaselineServer("peer-server.ts", { DATABASE_URL: databaseUrl, POOL_MAX: String(POOL_MAX) });
  try {
    await measureDatabaseWorkloads(peer.url, peer.child.pid!, "peer");
  } finally {
    await stop(peer.child);
  }
  if (only.has("B1")) record("B1 pg", await pgBaseline("B1", newTenant()));
  if (only.has("B2")) record("B2 pg", await pgBaseline("B2", newTenant(), B2_INFLIGHT));
  if (only.has("B3")) {
    record("B3-save pg", await pgBaseline("B3-save", pgTenantB3));
    record("B3-get pg", await pgBaseline("B3-get", pgTenantB3));
  }
  if (only.has("B4")) record("B4 pg", await pgBaseline("B4", newTenant()));
}

/** Saves executions 0..B3_EXECUTIONS-1 of bench/workloads.ts for `tenant` through the server. */
async function saveAllExecutions(url: string, tenant: string): Promise<void> {
  const client = createClient(WorkflowStateService, createGrpcTransport({ baseUrl: url }));
  const headers = { [TENANT_HEADER]: tenant };
  for (let i = 0; i < B3_EXECUTIONS; i += INFLIGHT) {
    const batch = Array.from({ length: Math.min(INFLIGHT, B3_EXECUTIONS - i) }, (_, k) => execution(i + k));
    await Promise.all(batch.map((e) => client.saveWorkflowExecution({ execution: e }, { headers })));
  }
}

let b5Tenant: string | undefined;
let b6Tenant: string | undefined;

/**
 * A streaming workload (B5, B6): one call reading every execution of
 * `tenant` through our server, with the server's RSS sampled as it goes,
 * against the raw cursor (bench/baselines/pg-stream.ts) over the same rows.
 */
async function runStream(workload: "B5" | "B6", tenant: string, rows: number, load: Record<string, unknown>, after?: () => Promise<unknown>): Promise<void> {
  const s = await startOurs();
  try {
    const pid = s.child.pid!;
    const before = memoryOf(pid).rssMb;
    const samples: { at: number; rssMb: number }[] = [];
    const sampler = setInterval(() => samples.push({ at: Date.now(), rssMb: memoryOf(pid).rssMb }), 50);
    const r = await runPinnedJson<{ rows: number; seconds: number; rate: number; markedAt: number | null; status: string }>(
      LOAD_CORE, "bench/load/stream-load.ts", [JSON.stringify({ url: s.url, tenant, markRows: MARK_ROWS, ...load })],
    );
    clearInterval(sampler);
    const peakMb = memoryOf(pid).peakMb;
    if (r.status !== "0" || r.rows !== rows) throw new Error(`${workload}: read ${r.rows} of ${rows} rows, status ${r.status}`);
    const peakAtMark = Math.max(before, ...samples.filter((x) => r.markedAt !== null && x.at <= r.markedAt).map((x) => x.rssMb));
    record(`${workload} ours`, {
      rate: r.rate, p50Ms: r.seconds * 1000, p99Ms: r.seconds * 1000, errors: 0,
      extra: { rssBeforeMb: before, peakRssAt100kMb: peakAtMark, peakRssMb: peakMb },
    });
  } finally {
    await stop(s.child);
    await after?.();
  }
  const base = await runPinnedJson<{ rows: number; seconds: number; rate: number }>(SERVER_CORE, "bench/baselines/pg-stream.ts", [
    JSON.stringify({ databaseUrl, tenant }),
  ]);
  if (base.rows !== rows) throw new Error(`${workload} baseline read ${base.rows} of ${rows} rows`);
  record(`${workload} pg`, { rate: base.rate, p50Ms: base.seconds * 1000, p99Ms: base.seconds * 1000, errors: 0 });
}

/** B5: StreamIncompleteWorkflows over every execution of its tenant. */
const runB5 = () => runStream("B5", b5Tenant!, b5Rows, {});

/**
 * B6: one ClaimIncompleteWorkflows call claiming every execution of its
 * tenant (each batch an UPDATE taking a lease and a fencing token per row).
 * The leases are cleared after each run (as the connecting superuser), so
 * that every run claims all of them.
 */
const runB6 = () =>
  runStream("B6", b6Tenant!, b6Rows, { claimOwner: "bench" }, () =>
    knex.raw(
      "UPDATE workflow_executions SET lease_owner = NULL, lease_token = NULL, lease_expire_time = NULL WHERE tenant_id = ? AND lease_token IS NOT NULL",
      [b6Tenant!],
    ),
  );

/** Row-level security: bench/rls-cost.ts (GetWorkflowExecution's SELECT bound to its tenant against the same SELECT unbound), pinned to the server core. */
async function runRls(): Promise<void> {
  const r = await runPinnedJson<{ plain: number; scoped: number }>(SERVER_CORE, "bench/rls-cost.ts", [
    `--seconds=${seconds}`, `--concurrency=${INFLIGHT}`, "--workloads=get", "--rounds=1", "--json",
  ], { DATABASE_URL: databaseUrl });
  record("RLS plain", { rate: r.plain, p50Ms: Number.NaN, p99Ms: Number.NaN, errors: 0 });
  record("RLS scoped", { rate: r.scoped, p50Ms: Number.NaN, p99Ms: Number.NaN, errors: 0 });
}

// ---------------------------------------------------------------- report

function line(workload: string, what: string, ours: string, baselineName: string, baseline: string, goal: number, unit: Result["unit"] = "calls/s"): Result | undefined {
  if (!measured[ours] || !measured[baseline]) return undefined;
  const o = medianRun(measured[ours]);
  const b = medianRun(measured[baseline]);
  return { workload, what, ours: o, baselineName, baseline: b, ratio: o.rate / b.rate, goal, unit };
}

function report(meta: Record<string, unknown>): string {
  const results = [
    line("B0", "no-op RPC (grpc.health.v1.Health/Check), full stack, 32 in flight", "B0 ours", "bare @grpc/grpc-js", "B0 grpc-js-health.ts", 0.8),
    line("B0", "", "B0 ours", "bare node:http2", "B0 http2-health.ts", 0),
    line("B1", "RecordRoutingDecision, one per call, 32 in flight", "B1 ours", "pg pool, single-row INSERT", "B1 pg", 0.8),
    line("B2", `RecordRoutingDecisions, 500 per call, ${B2_INFLIGHT} in flight`, "B2 ours", "pg pool, INSERT ... SELECT FROM unnest(arrays)", "B2 pg", 0.7),
    line("B3", "SaveWorkflowExecution, 5-8 KB, 32 in flight", "B3-save ours", "pg pool, the same upsert", "B3-save pg", 0.8),
    line("B3", "GetWorkflowExecution, 32 in flight", "B3-get ours", "pg pool, the same SELECT", "B3-get pg", 0.8),
    line("B4", "RecordTaskOutcome, 10 hot agents, 32 in flight", "B4 ours", "pg pool, the same increment", "B4 pg", 0.8),
    line("B5", `StreamIncompleteWorkflows, ${b5Rows.toLocaleString("en")} rows`, "B5 ours", "pg cursor, FETCH 1000, one process", "B5 pg", 0.5, "rows/s"),
    line("B6", `ClaimIncompleteWorkflows, ${b6Rows.toLocaleString("en")} rows, one claimer`, "B6 ours", "pg cursor, FETCH 1000, one process", "B6 pg", 0.5, "rows/s"),
  ].filter((r): r is Result => r !== undefined);
  // Against the peer (what a team would write instead): calls/s at least 1.0
  // of the peer's (B1, with group commit, 1.5), server CPU per call at most 1.0.
  const peers = [
    ["B1", "RecordRoutingDecision", 1.5],
    ["B2", "RecordRoutingDecisions, 500 per call", 1.0],
    ["B3-save", "SaveWorkflowExecution", 1.0],
    ["B3-get", "GetWorkflowExecution", 1.0],
    ["B4", "RecordTaskOutcome", 1.0],
  ].flatMap(([key, what, goal]) => {
    const r = line(String(key).slice(0, 2), String(what), `${key} ours`, "peer", `${key} peer`, Number(goal));
    if (r === undefined) return [];
    const cpuOurs = r.ours.extra?.cpuUsPerCall ?? Number.NaN;
    const cpuPeer = r.baseline.extra?.cpuUsPerCall ?? Number.NaN;
    return [{ ...r, cpuOurs, cpuPeer, cpuRatio: cpuOurs / cpuPeer }];
  });
  const costs = [
    line("auth", "B0 with an API key required, against B0 in development mode", "B0 ours+auth", "B0 without keys", "B0 ours", 0),
    line("RLS", `GetWorkflowExecution's SELECT bound to its tenant (RLS), ${INFLIGHT} concurrent`, "RLS scoped", "the same SELECT through Knex, unbound", "RLS plain", 0),
  ].filter((r): r is Result => r !== undefined);

  const n = (x: number, digits = 0) => (Number.isFinite(x) ? x.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "–");
  const ms = (x: number) => (Number.isFinite(x) ? (x < 10 ? n(x, 2) : n(x, 1)) : "–");
  const out: string[] = [];
  out.push(`Median of ${runs} runs, ${seconds} s each after ${warmupSeconds} s of warm-up; ${meta.when}; ${meta.cpu}; ${meta.postgres}; Node ${process.versions.node}; B0 load: ${useH2load ? "h2load" : "Node generator (h2load not installed)"}.`, "");
  out.push("| Workload | | ours | p50 ms | p99 ms | baseline | baseline rate | p50 ms | p99 ms | ratio | goal |");
  out.push("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|");
  for (const r of results) {
    const goal = r.goal === 0 ? "" : `${r.ratio >= r.goal ? "met" : "NOT met"} (≥ ${r.goal})`;
    const [p50, p99, bp50, bp99] = r.unit === "rows/s" ? ["", "", "", ""] : [ms(r.ours.p50Ms), ms(r.ours.p99Ms), ms(r.baseline.p50Ms), ms(r.baseline.p99Ms)];
    out.push(`| ${r.workload} | ${r.what} | ${n(r.ours.rate)} ${r.unit} | ${p50} | ${p99} | ${r.baselineName} | ${n(r.baseline.rate)} | ${bp50} | ${bp99} | ${n(r.ratio, 2)} | ${goal} |`);
  }
  const b5 = measured["B5 ours"] && medianRun(measured["B5 ours"]).extra;
  if (b5) {
    const flat = b5.peakRssMb - b5.peakRssAt100kMb;
    out.push("", `B5 server RSS: ${n(b5.rssBeforeMb)} MB before streaming, peak ${n(b5.peakRssAt100kMb)} MB by row ${MARK_ROWS.toLocaleString("en")}, peak ${n(b5.peakRssMb)} MB by the last row (${flat >= 0 ? "+" : ""}${n(flat, 1)} MB); goal under 200 MB and flat: ${b5.peakRssMb < 200 && flat < 10 ? "met" : "NOT met"}.`);
  }
  const b6 = measured["B6 ours"] && medianRun(measured["B6 ours"]).extra;
  if (b6) {
    const flat = b6.peakRssMb - b6.peakRssAt100kMb;
    out.push("", `B6 server RSS: ${n(b6.rssBeforeMb)} MB before claiming, peak ${n(b6.peakRssAt100kMb)} MB by row ${MARK_ROWS.toLocaleString("en")}, peak ${n(b6.peakRssMb)} MB by the last row (${flat >= 0 ? "+" : ""}${n(flat, 1)} MB); goal under 200 MB and flat: ${b6.peakRssMb < 200 && flat < 10 ? "met" : "NOT met"}.`);
  }
  if (peers.length > 0) {
    out.push(
      "",
      "Against the peer: a bare @grpc/grpc-js server with a pg pool running the same statements (bench/baselines/peer-server.ts), same generator, same core. CPU per call: the server process's user + system time from /proc while the generator ran, divided by every call it completed (PostgreSQL's own CPU not included).",
      "",
      "| Workload | | ours | peer | ratio | goal | CPU µs/call, ours | peer | ratio | goal |",
      "|---|---|---:|---:|---:|---|---:|---:|---:|---|",
    );
    for (const p of peers) {
      const rateGoal = `${p.ratio >= p.goal ? "met" : "NOT met"} (≥ ${p.goal})`;
      const cpuGoal = Number.isFinite(p.cpuRatio) ? `${p.cpuRatio <= 1 ? "met" : "NOT met"} (≤ 1.0)` : "";
      out.push(`| ${p.workload} | ${p.what} | ${n(p.ours.rate)} calls/s | ${n(p.baseline.rate)} | ${n(p.ratio, 2)} | ${rateGoal} | ${n(p.cpuOurs)} | ${n(p.cpuPeer)} | ${n(p.cpuRatio, 2)} | ${cpuGoal} |`);
    }
  }
  if (costs.length > 0) {
    out.push("", "| Cost of | measured as | rate | against | rate | ratio |", "|---|---|---:|---|---:|---:|");
    for (const c of costs) out.push(`| ${c.workload} | ${c.what} | ${n(c.ours.rate)} | ${c.baselineName} | ${n(c.baseline.rate)} | ${n(c.ratio, 2)} |`);
  }
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "latest.json"), `${JSON.stringify({ ...meta, runs, seconds, warmupSeconds, results, peers, costs, measured }, null, 2)}\n`);
  return `${out.join("\n")}\n`;
}

// ---------------------------------------------------------------- main

const knex = createDatabase({ databaseUrl, poolMax: 2, logger: silentLogger, statementTimeoutMs: BULK_STATEMENT_TIMEOUT_MS });
try {
  await migrate(knex);
  if (!fs.existsSync(path.join(ROOT, "dist/src/main.js"))) throw new Error("dist/src/main.js is missing: run `npm run build` (npm run bench does)");
  const { rows: [pgVersion] } = await knex.raw<{ rows: { version: string }[] }>("SELECT version()");
  const meta = {
    when: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
    cpu: `${os.cpus().length} × ${os.cpus()[0]?.model.trim()}`,
    postgres: pgVersion!.version.split(",")[0],
  };
  if (only.has("B5")) {
    b5Tenant = newTenant();
    const t0 = performance.now();
    await seedExecutions(knex, b5Tenant, b5Rows, 0);
    console.error(`B5: loaded ${b5Rows.toLocaleString("en")} executions in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  if (only.has("B6")) {
    b6Tenant = newTenant();
    const t0 = performance.now();
    await seedExecutions(knex, b6Tenant, b6Rows, 0);
    console.error(`B6: loaded ${b6Rows.toLocaleString("en")} executions in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  for (let run = 1; run <= runs; run++) {
    console.error(`run ${run} of ${runs}`);
    if (only.has("B0")) await runB0();
    if (["B1", "B2", "B3", "B4"].some((w) => only.has(w))) await runDatabaseWorkloads();
    if (only.has("RLS")) await runRls();
    if (only.has("B5")) await runB5();
    if (only.has("B6")) await runB6();
  }
  const table = report(meta);
  fs.writeFileSync(path.join(outDir, "latest.md"), table);
  console.log(table);
  console.error(`logs in ${logDir}; results in ${path.relative(ROOT, outDir)}/latest.{json,md}`);
} finally {
  // As the connecting (superuser) role, outside any tenant transaction: RLS does not hide the rows.
  for (const table of ["routing_decisions", "workflow_executions", "agent_statistics"]) await knex(table).whereIn("tenant_id", tenants).delete();
  await knex.destroy();
}
