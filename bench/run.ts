// `npm run bench`: every workload of docs/performance.md against the real
// server on PostgreSQL, side by side in the same run with its baselines: the
// peer (a bare grpc-js + pg service, B1-B4) and raw pg (the limit).
//
//   npm run bench                                   # DATABASE_URL or postgres://postgres@127.0.0.1:5432/test
//   npm run bench -- --runs=3 --seconds=5 --only=B0,B1 --b5-rows=1000000 --b6-rows=1000000
//
// Servers and raw-pg baselines run pinned to core 0, load generators to core 1
// (bench/lib/processes.ts). Each workload is measured `runs` times (default 3),
// ours, the peer and raw pg back to back within a run, each server started
// for its workload; the median run is reported. A workload that fails is
// tried once more in the same run; one that still fails is recorded as
// failed in that run (the report marks it) and the run goes on, and only a
// workload that failed in every run makes the benchmark exit 1. The results
// (bench/results/latest.json with every run, latest.md) are written after
// each workload, so a run stopped halfway keeps what it measured. Rows the
// benchmark writes belong to fresh tenants and are deleted at the end.
import { randomUUID, createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ChildProcess } from "node:child_process";
import { createDatabase, migrate } from "../src/db/database.js";
import { silentLogger } from "../src/logging/logger.js";
import { TENANT_HEADER } from "../src/tenancy/tenant-interceptor.js";
import { BULK_STATEMENT_TIMEOUT_MS, saveExecutions, seedExecutions } from "./lib/seed.js";
import {
  cpuSecondsOf, freePort, have, LOAD_CORE, memoryOf, ROOT, runPinned, runPinnedJson, SERVER_CORE, startPinned, stop, waitForServer,
} from "./lib/processes.js";
import { type Measurement, medianRun, percentile } from "./lib/stats.js";
import { type UnaryWorkload, paths } from "./workloads.js";

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
/** B5/B6: the row at which memory is read the first time (the issue's 100,000; a tenth of a smaller run). */
const MARK_ROWS = 100_000;
/** The long-term bar against raw pg (issue 16: reported, not a goal of each run). */
const PG_BAR = 0.8;

const tenants: string[] = [];
const newTenant = () => {
  const t = randomUUID();
  tenants.push(t);
  return t;
};

// ---------------------------------------------------------------- targets

interface Started {
  url: string;
  child: ChildProcess;
}
let starts = 0;

/**
 * Starts `script` pinned to the server core with the port as `portVariable`
 * (our server) or as its first argument (a baseline), each start with its own
 * log, and waits until that very process serves (bench/lib/processes.ts
 * waitForServer). A start that fails leaves nothing running.
 */
async function startServer(script: string, env: NodeJS.ProcessEnv, portArgument: boolean, nodeOptions: string[] = []): Promise<Started> {
  const port = await freePort();
  const log = path.join(logDir, `${++starts}-${path.basename(script).replace(/\.[jt]s$/, "")}.log`);
  const child = startPinned(SERVER_CORE, path.join(ROOT, script), portArgument ? [String(port)] : [], portArgument ? env : { ...env, PORT: String(port) }, log, nodeOptions);
  try {
    await waitForServer(port, child, log);
  } catch (err) {
    await stop(child);
    throw err;
  }
  return { url: `http://127.0.0.1:${port}`, child };
}

/** Our server (the built dist/src/main.js, as `npm start` runs it) on PostgreSQL. */
const startOurs = (env: NodeJS.ProcessEnv = {}, nodeOptions: string[] = []) =>
  startServer("dist/src/main.js", { HOST: "127.0.0.1", DATABASE_URL: databaseUrl, DATABASE_POOL_MAX: String(POOL_MAX), ...env }, false, nodeOptions);

const startBaselineServer = (script: string, env: NodeJS.ProcessEnv = {}) => startServer(path.join("bench/baselines", script), env, true);

const startPeer = () => startBaselineServer("peer-server.ts", { DATABASE_URL: databaseUrl, POOL_MAX: String(POOL_MAX) });

/** Runs `fn` against a server that `starting` starts, and stops it whatever happens. */
async function withServer<T>(starting: Promise<Started>, fn: (url: string, pid: number) => Promise<T>): Promise<T> {
  const s = await starting;
  try {
    return await fn(s.url, s.child.pid!);
  } finally {
    await stop(s.child);
  }
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
  const { errorsByStatus: _, allCalls: __, ...measurement } = m;
  return measurement;
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
  const failed = Number(done[5]) + Number(done[6]);
  if (failed > 0) throw new Error(`B0 against ${url}: h2load counted ${failed} failed requests`);
  // Per request: start (µs since epoch), HTTP status, duration (µs).
  const durations = fs.readFileSync(perRequest, "utf8").trim().split("\n").map((line) => Number(line.split("\t")[2]) / 1000);
  const sorted = Float64Array.from(durations).sort();
  return { rate: Number(done[4]) / seconds, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), errors: 0 };
}

/** The raw-pg baseline of a workload, pinned to the server core (it plays the server's part). */
async function pgBaseline(workload: Exclude<UnaryWorkload, "B0">, tenant: string, concurrency = INFLIGHT): Promise<Measurement> {
  const m = await runPinnedJson<Measurement>(SERVER_CORE, "bench/baselines/pg-workloads.ts", [
    JSON.stringify({ databaseUrl, tenant, workload, concurrency, poolMax: POOL_MAX, seconds, warmupSeconds }),
  ]);
  if (m.errors > 0) throw new Error(`raw pg ${workload}: ${m.errors} statements failed`);
  return m;
}

// ---------------------------------------------------------------- runs

/** Every run's measurement of each target, e.g. "B1 ours": what latest.json keeps as `measured`. */
const measured: Record<string, (Measurement & { run: number })[]> = {};
/** Each failed attempt of a workload: what latest.json keeps as `failures`, and the report lists. */
const failures: { run: number; workload: string; attempt: number; error: string }[] = [];
type Record_ = (key: string, m: Measurement) => void;

/**
 * Runs one workload of run `run` (its targets back to back), tried once more
 * if it fails. Its measurements are kept only when all of its targets were
 * measured in one attempt, so that a run's figures come from one attempt; the
 * results are written out after it either way.
 */
async function runWorkload(run: number, workload: string, fn: (record: Record_) => Promise<void>, write: () => void): Promise<void> {
  for (let attempt = 1; attempt <= 2; attempt++) {
    const got: Record<string, Measurement> = {};
    try {
      await fn((key, m) => (got[key] = m));
      for (const [key, m] of Object.entries(got)) (measured[key] ??= []).push({ ...m, run });
      return;
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      failures.push({ run, workload, attempt, error });
      console.error(`run ${run}: ${workload} failed (attempt ${attempt} of 2): ${error}${attempt === 1 ? "; trying once more" : "; recorded as failed in this run"}`);
    } finally {
      write();
    }
  }
}

/** B0 on our server and its two baselines; then authentication: the same call on our server with an API key required (health made non-public). */
async function runB0(record: Record_): Promise<void> {
  await withServer(startOurs(), async (url) => record("B0 ours", await b0Load(url)));
  for (const script of ["grpc-js-health.ts", "http2-health.ts"]) {
    await withServer(startBaselineServer(script), async (url) => record(`B0 ${script}`, await b0Load(url)));
  }
  const key = randomUUID() + randomUUID();
  const keys = JSON.stringify([{ id: "bench", tenant: randomUUID(), sha256: createHash("sha256").update(key).digest("hex") }]);
  await withServer(startOurs({ AUTH_KEYS: keys, AUTH_PUBLIC_HEALTH: "false" }), async (url) =>
    record("B0 ours+auth", await b0Load(url, { authorization: `Bearer ${key}` })),
  );
}

type DatabaseWorkload = "B1" | "B2" | "B3" | "B4";

/**
 * One of B1-B4 on our server, on the peer (bench/baselines/peer-server.ts),
 * each started for it, with their CPU per call, then as raw pg. B3 saves
 * every execution before the clock starts, so that saves update and gets find.
 */
async function runDatabaseWorkload(workload: DatabaseWorkload, record: Record_): Promise<void> {
  const inflight = workload === "B2" ? B2_INFLIGHT : INFLIGHT;
  const pgTenant = newTenant();
  for (const [name, starting] of [["ours", startOurs], ["peer", startPeer]] as const) {
    await withServer(starting(), async (url, pid) => {
      const load = (w: UnaryWorkload, tenant: string) => nodeLoad(url, w, { [TENANT_HEADER]: tenant }, inflight, seconds, pid);
      if (workload !== "B3") {
        record(`${workload} ${name}`, await load(workload, newTenant()));
        return;
      }
      const tenant = newTenant();
      await saveExecutions(url, tenant, INFLIGHT);
      if (name === "ours") await saveExecutions(url, pgTenant, INFLIGHT);
      record(`B3-save ${name}`, await load("B3-save", tenant));
      record(`B3-get ${name}`, await load("B3-get", tenant));
    });
  }
  if (workload === "B3") {
    record("B3-save pg", await pgBaseline("B3-save", pgTenant));
    record("B3-get pg", await pgBaseline("B3-get", pgTenant));
  } else {
    record(`${workload} pg`, await pgBaseline(workload, pgTenant, inflight));
  }
}

let b5Tenant: string | undefined;
let b6Tenant: string | undefined;
const markRows = (rows: number) => Math.max(1, Math.min(MARK_ROWS, Math.floor(rows / 10)));

/**
 * A streaming workload (B5, B6): one call reading every execution of
 * `tenant` through our server, with the server's RSS sampled as it goes and
 * its heap read after full collections at the mark row and at the last row
 * (bench/lib/heap-probe.mjs, preloaded, answers SIGUSR2 from the load
 * generator), against the raw cursor (bench/baselines/pg-stream.ts) over the
 * same rows.
 */
async function runStream(workload: "B5" | "B6", tenant: string, rows: number, load: Record<string, unknown>, record: Record_, after?: () => Promise<unknown>): Promise<void> {
  const heapFile = path.join(logDir, `${starts + 1}-heap.jsonl`);
  const mark = markRows(rows);
  const s = await startOurs({ BENCH_HEAP_FILE: heapFile }, ["--expose-gc", "--import", path.join(ROOT, "bench/lib/heap-probe.mjs")]);
  try {
    const pid = s.child.pid!;
    const before = memoryOf(pid).rssMb;
    const samples: { at: number; rssMb: number }[] = [];
    const sampler = setInterval(() => samples.push({ at: Date.now(), rssMb: memoryOf(pid).rssMb }), 50);
    const r = await runPinnedJson<{ rows: number; seconds: number; rate: number; markedAt: number | null; status: string }>(
      LOAD_CORE, "bench/load/stream-load.ts", [JSON.stringify({ url: s.url, tenant, markRows: mark, serverPid: pid, heapAtRows: [mark, rows], ...load })],
    ).finally(() => clearInterval(sampler));
    const peakMb = memoryOf(pid).peakMb;
    if (r.status !== "0" || r.rows !== rows) throw new Error(`${workload}: read ${r.rows} of ${rows} rows, status ${r.status}`);
    const heap = await heapReadings(heapFile, 2);
    const peakAtMark = Math.max(before, ...samples.filter((x) => r.markedAt !== null && x.at <= r.markedAt).map((x) => x.rssMb));
    record(`${workload} ours`, {
      rate: r.rate, p50Ms: r.seconds * 1000, p99Ms: r.seconds * 1000, errors: 0,
      extra: { markRows: mark, rssBeforeMb: before, peakRssAtMarkMb: peakAtMark, peakRssMb: peakMb, heapAtMarkMb: heap[0]!, heapAtEndMb: heap[1]! },
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

/** The heap readings (MB, after full collections) the server's heap probe wrote, waiting up to 5 s for `count` of them. */
async function heapReadings(file: string, count: number): Promise<number[]> {
  const end = Date.now() + 5_000;
  for (;;) {
    const lines = fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : [];
    if (lines.length >= count) return lines.map((l) => (JSON.parse(l) as { heapUsedMb: number }).heapUsedMb);
    if (Date.now() > end) throw new Error(`the server's heap probe wrote ${lines.length} of ${count} readings to ${file}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** B5: StreamIncompleteWorkflows over every execution of its tenant. */
const runB5 = (record: Record_) => runStream("B5", b5Tenant!, b5Rows, {}, record);

/**
 * B6: one ClaimIncompleteWorkflows call claiming every execution of its
 * tenant (each batch writing a lease row, with a fencing token, per row).
 * The leases are deleted after each run (as the connecting superuser), so
 * that every run claims all of them, and vacuumed.
 */
const runB6 = (record: Record_) =>
  runStream("B6", b6Tenant!, b6Rows, { claimOwner: "bench" }, record, async () => {
    await knex.raw("DELETE FROM execution_leases WHERE tenant_id = ?", [b6Tenant!]);
    // As autovacuum would: otherwise each run claims over the dead lease rows of the runs before it.
    await knex.raw("VACUUM execution_leases");
  });

/** Row-level security: bench/rls-cost.ts (GetWorkflowExecution's SELECT bound to its tenant against the same SELECT unbound), pinned to the server core. */
async function runRls(record: Record_): Promise<void> {
  const r = await runPinnedJson<{ plain: number; scoped: number }>(SERVER_CORE, "bench/rls-cost.ts", [
    `--seconds=${seconds}`, `--concurrency=${INFLIGHT}`, "--workloads=get", "--rounds=1", "--json",
  ], { DATABASE_URL: databaseUrl });
  record("RLS plain", { rate: r.plain, p50Ms: Number.NaN, p99Ms: Number.NaN, errors: 0 });
  record("RLS scoped", { rate: r.scoped, p50Ms: Number.NaN, p99Ms: Number.NaN, errors: 0 });
}

// ---------------------------------------------------------------- report

const num = (x: number | undefined, digits = 0) =>
  x !== undefined && Number.isFinite(x) ? x.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "–";
const ms = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? (x < 10 ? num(x, 2) : num(x, 1)) : "–");
const median = (key: string): Measurement | undefined => (measured[key]?.length ? medianRun(measured[key]) : undefined);
const ratio = (a: Measurement | undefined, b: Measurement | undefined) => (a && b ? a.rate / b.rate : Number.NaN);

/** Whether `value` meets a goal of at least (or at most) `goal`; undefined when it was not measured. */
function verdict(value: number, goal: number, atMost = false): string {
  if (!Number.isFinite(value)) return "–";
  return `${(atMost ? value <= goal : value >= goal) ? "met" : "NOT met"} (${atMost ? "≤" : "≥"} ${shownGoal(goal)})`;
}

/** A goal as the issue writes it: ratios with one decimal (1.0, 0.8), megabytes as they are. */
const shownGoal = (goal: number) => (goal < 10 ? goal.toFixed(1) : String(goal));

/** How many runs a workload has figures from, and which it failed in or needed a second attempt. */
function runsCell(workload: string, keys: string[]): string {
  const got = Math.min(...keys.map((k) => measured[k]?.length ?? 0));
  const failed = failures.filter((f) => f.workload === workload && f.attempt === 2).map((f) => f.run);
  const retried = failures.filter((f) => f.workload === workload && f.attempt === 1 && !failed.includes(f.run)).map((f) => f.run);
  return [`${got}/${runs}`, ...(failed.length ? [`FAILED in run ${failed.join(", ")}`] : []), ...(retried.length ? [`retried in run ${retried.join(", ")}`] : [])].join(", ");
}

interface Goal {
  goal: string;
  value: number;
  unit: "" | " MB";
  met: boolean | null;
}

/** The table (markdown) and the JSON result of what was measured so far. */
function report(meta: Record<string, unknown>, complete: boolean): { table: string; json: unknown } {
  const goals: Goal[] = [];
  const goal = (text: string, value: number, target: number, atMost = false, unit: Goal["unit"] = "") =>
    goals.push({ goal: text, value, unit, met: Number.isFinite(value) ? (atMost ? value <= target : value >= target) : null });
  const out: string[] = [];
  out.push(`Median of ${runs} runs, ${seconds} s each after ${warmupSeconds} s of warm-up; ${meta.when}; ${meta.cpu}; ${meta.postgres}; Node ${process.versions.node}; B0 load: ${useH2load ? "h2load" : "Node generator (h2load not installed)"}.${complete ? "" : " INCOMPLETE: the run is still going or was stopped."}`);

  // B1-B4: ours, the peer, raw pg; the two ratios; CPU per call of ours and the peer.
  const database = [
    ["B1", "B1", "RecordRoutingDecision, one per call, 32 in flight", 1.5],
    ["B2", "B2", `RecordRoutingDecisions, 500 per call (bulk insert), ${B2_INFLIGHT} in flight`, 1.0],
    ["B3", "B3-save", "SaveWorkflowExecution, 5-8 KB, 32 in flight", 1.0],
    ["B3", "B3-get", "GetWorkflowExecution, 32 in flight", 1.0],
    ["B4", "B4", "RecordTaskOutcome, 10 hot agents, 32 in flight", 1.0],
  ] as const;
  const peers = database.flatMap(([workload, key, what, peerGoal]) => {
    const [ours, peer, pg] = [median(`${key} ours`), median(`${key} peer`), median(`${key} pg`)];
    if (!ours && !peer && !pg) return [];
    const cpuOurs = ours?.extra?.cpuUsPerCall ?? Number.NaN;
    const cpuPeer = peer?.extra?.cpuUsPerCall ?? Number.NaN;
    const row = { workload: key, what, runs: runsCell(workload, [`${key} ours`, `${key} peer`, `${key} pg`]), ours, peer, pg,
      oursToPeer: ratio(ours, peer), peerGoal, oursToPg: ratio(ours, pg), cpuOurs, cpuPeer, cpuRatio: cpuOurs / cpuPeer };
    goal(`${key}: calls/s at least ${shownGoal(peerGoal)} of the peer's`, row.oursToPeer, peerGoal);
    goal(`${key}: server CPU per call at most 1.0 of the peer's`, row.cpuRatio, 1.0, true);
    return [row];
  });
  if (peers.length > 0) {
    out.push(
      "",
      "B1-B4 against the peer (a bare @grpc/grpc-js server with a pg pool running the same statements, bench/baselines/peer-server.ts; same generator, same core) and raw pg (a pg pool running the same statements with no gRPC: the limit). CPU per call: the server process's user + system time from /proc while the generator ran, divided by every call it completed (PostgreSQL's own CPU not included).",
      "",
      `| Workload | | runs | ours calls/s | peer | raw pg | ours/peer | goal | ours/raw pg | long-term bar | CPU µs/call, ours | peer | ours/peer | goal |`,
      "|---|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---|",
    );
    for (const p of peers) {
      out.push(`| ${p.workload} | ${p.what} | ${p.runs} | ${num(p.ours?.rate)} | ${num(p.peer?.rate)} | ${num(p.pg?.rate)} | ${num(p.oursToPeer, 2)} | ${verdict(p.oursToPeer, p.peerGoal)} | ${num(p.oursToPg, 2)} | ${verdict(p.oursToPg, PG_BAR)} | ${num(p.cpuOurs)} | ${num(p.cpuPeer)} | ${num(p.cpuRatio, 2)} | ${verdict(p.cpuRatio, 1.0, true)} |`);
    }
    out.push("", "| Latency, ms | ours p50 | p99 | peer p50 | p99 | raw pg p50 | p99 |", "|---|---:|---:|---:|---:|---:|---:|");
    for (const p of peers) out.push(`| ${p.workload} | ${ms(p.ours?.p50Ms)} | ${ms(p.ours?.p99Ms)} | ${ms(p.peer?.p50Ms)} | ${ms(p.peer?.p99Ms)} | ${ms(p.pg?.p50Ms)} | ${ms(p.pg?.p99Ms)} |`);
  }

  // B0: the full stack against bare servers.
  const b0 = [
    ["bare @grpc/grpc-js", "B0 grpc-js-health.ts", 0.8],
    ["bare node:http2", "B0 http2-health.ts", 0],
  ] as const;
  const b0Rows = b0.flatMap(([name, key, target]) => {
    const [ours, base] = [median("B0 ours"), median(key)];
    if (!ours && !base) return [];
    const r = ratio(ours, base);
    if (target > 0) goal(`B0: calls/s at least ${shownGoal(target)} of ${name}`, r, target);
    return [{ name, runs: runsCell("B0", ["B0 ours", key]), ours, base, ratio: r, target }];
  });
  if (b0Rows.length > 0) {
    out.push("", "| B0: no-op RPC (grpc.health.v1.Health/Check), full stack, 32 in flight | runs | ours calls/s | p50 ms | p99 ms | baseline calls/s | p50 ms | p99 ms | ratio | goal |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (const r of b0Rows) {
      out.push(`| ${r.name} | ${r.runs} | ${num(r.ours?.rate)} | ${ms(r.ours?.p50Ms)} | ${ms(r.ours?.p99Ms)} | ${num(r.base?.rate)} | ${ms(r.base?.p50Ms)} | ${ms(r.base?.p99Ms)} | ${num(r.ratio, 2)} | ${r.target > 0 ? verdict(r.ratio, r.target) : ""} |`);
    }
  }

  // B5, B6: rows/s against the raw cursor; memory.
  const streams = ([
    ["B5", `StreamIncompleteWorkflows, ${b5Rows.toLocaleString("en")} rows`],
    ["B6", `ClaimIncompleteWorkflows, ${b6Rows.toLocaleString("en")} rows, one claimer`],
  ] as const).flatMap(([workload, what]) => {
    const [ours, pg] = [median(`${workload} ours`), median(`${workload} pg`)];
    if (!ours && !pg) return [];
    const x = ours?.extra ?? {};
    const growth = (x.heapAtEndMb ?? Number.NaN) - (x.heapAtMarkMb ?? Number.NaN);
    const row = { workload, what, runs: runsCell(workload, [`${workload} ours`, `${workload} pg`]), ours, pg, ratio: ratio(ours, pg), growth, peak: x.peakRssMb ?? Number.NaN, x };
    goal(`${workload}: rows/s at least 0.5 of the raw cursor`, row.ratio, 0.5);
    goal(`${workload}: heap after full collections grows at most 10 MB from row ${num(x.markRows)} to the last`, growth, 10, true, " MB");
    goal(`${workload}: peak RSS under 200 MB`, row.peak, 200, true, " MB");
    return [row];
  });
  if (streams.length > 0) {
    out.push(
      "",
      "B5 and B6 against the raw cursor (pg, DECLARE ... FETCH 1000, one process). Heap: the server's V8 heap in use after two full collections (bench/lib/heap-probe.mjs), at the mark row and when the last row arrived; RSS from /proc.",
      "",
      "| Workload | | runs | ours rows/s | raw cursor | ratio | goal | heap at mark, MB | at last row | growth | goal | RSS before, MB | peak by mark | peak | goal |",
      "|---|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---|",
    );
    for (const r of streams) {
      out.push(`| ${r.workload} | ${r.what} | ${r.runs} | ${num(r.ours?.rate)} | ${num(r.pg?.rate)} | ${num(r.ratio, 2)} | ${verdict(r.ratio, 0.5)} | ${num(r.x.heapAtMarkMb, 1)} (row ${num(r.x.markRows)}) | ${num(r.x.heapAtEndMb, 1)} | ${num(r.growth, 1)} | ${verdict(r.growth, 10, true)} | ${num(r.x.rssBeforeMb)} | ${num(r.x.peakRssAtMarkMb)} | ${num(r.peak)} | ${verdict(r.peak, 200, true)} |`);
    }
  }

  // Costs of authentication and of row-level security, as ratios.
  const costs = ([
    ["authentication", "B0 with an API key required", "B0 ours+auth", "B0 in development mode (no keys)", "B0 ours", "B0"],
    ["row-level security", `GetWorkflowExecution's SELECT bound to its tenant, ${INFLIGHT} concurrent (bench/rls-cost.ts)`, "RLS scoped", "the same SELECT through Knex, unbound", "RLS plain", "RLS"],
  ] as const).flatMap(([cost, what, key, against, baseKey, workload]) => {
    const [m, base] = [median(key), median(baseKey)];
    if (!m && !base) return [];
    return [{ cost, what, against, runs: runsCell(workload, [key, baseKey]), rate: m?.rate, baseRate: base?.rate, ratio: ratio(m, base) }];
  });
  if (costs.length > 0) {
    out.push("", "| Cost of | measured as | runs | calls/s | against | calls/s | ratio |", "|---|---|---|---:|---|---:|---:|");
    for (const c of costs) out.push(`| ${c.cost} | ${c.what} | ${c.runs} | ${num(c.rate)} | ${c.against} | ${num(c.baseRate)} | ${num(c.ratio, 2)} |`);
  }

  if (goals.length > 0) {
    out.push("", "Goals (issue 16):", "");
    for (const g of goals) out.push(`- ${g.goal}: ${g.met === null ? "not measured" : `${g.met ? "met" : "NOT met"} (${num(g.value, g.unit === "" ? 2 : 1)}${g.unit})`}`);
    const bar = peers.filter((p) => Number.isFinite(p.oursToPg)).map((p) => `${p.workload} ${num(p.oursToPg, 2)}`);
    if (bar.length > 0) out.push(`- against raw pg, the long-term bar of ${PG_BAR} (reported, not a goal of this issue): ${bar.join(", ")}`);
    for (const c of costs) out.push(`- cost of ${c.cost}: ${num(c.ratio, 2)} of the calls/s without it`);
  }
  if (failures.length > 0) {
    out.push("", "Failed attempts (a workload is tried twice per run; logs in the directory below):", "");
    for (const f of failures) out.push(`- run ${f.run}, ${f.workload}, attempt ${f.attempt}: ${f.error.split("\n")[0]}`);
  }
  return {
    table: `${out.join("\n")}\n`,
    json: { ...meta, runs, seconds, warmupSeconds, complete, logDir, peers, b0: b0Rows, streams, costs, goals, failures, measured },
  };
}

/** Writes latest.json and latest.md from what was measured so far. */
function writeResults(meta: Record<string, unknown>, complete: boolean): string {
  const { table, json } = report(meta, complete);
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, "latest.json"), `${JSON.stringify(json, null, 2)}\n`);
  fs.writeFileSync(path.join(outDir, "latest.md"), table);
  return table;
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
  if (only.has("B5") || only.has("B6")) {
    // As autovacuum would after such a load (in PostgreSQL's default
    // configuration, within a minute; this machine's PostgreSQL runs with
    // autovacuum off): without statistics the planner read every claimable
    // row of the tenant for each claim batch of B6 (a bitmap scan, a hash
    // join and a sort), and the rows deleted after earlier runs stay dead.
    const t0 = performance.now();
    await knex.raw("VACUUM ANALYZE workflow_executions, execution_leases");
    console.error(`B5/B6: vacuumed and analyzed in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const workloads: [string, (record: Record_) => Promise<void>][] = [
    ["B0", runB0],
    ...(["B1", "B2", "B3", "B4"] as const).map((w): [string, (record: Record_) => Promise<void>] => [w, (record) => runDatabaseWorkload(w, record)]),
    ["RLS", runRls],
    ["B5", runB5],
    ["B6", runB6],
  ];
  const write = () => void writeResults(meta, false);
  for (let run = 1; run <= runs; run++) {
    console.error(`run ${run} of ${runs}`);
    for (const [name, fn] of workloads) if (only.has(name)) await runWorkload(run, name, fn, write);
  }
  const table = writeResults(meta, true);
  console.log(table);
  console.error(`logs in ${logDir}; results in ${path.relative(ROOT, outDir)}/latest.{json,md}`);
  const failedEveryRun = workloads.map(([name]) => name).filter((name) => only.has(name) && new Set(failures.filter((f) => f.workload === name && f.attempt === 2).map((f) => f.run)).size === runs);
  if (failedEveryRun.length > 0) {
    console.error(`bench: ${failedEveryRun.join(", ")} failed in every run`);
    process.exitCode = 1;
  }
} finally {
  // As the connecting (superuser) role, outside any tenant transaction: RLS does not hide the rows.
  for (const table of ["routing_decisions", "workflow_executions", "agent_statistics"]) await knex(table).whereIn("tenant_id", tenants).delete();
  await knex.destroy();
}
