// A hostile tenant against a server in its own process (so that its memory is
// measured apart from this test's): the server stays under a documented RSS
// bound and another tenant's calls keep their latency.
//
// - 30 StreamIncompleteWorkflows readers that stop reading at their first
//   message, over 2 MB executions, plus a ListWorkflowExecutions of page size
//   1,000 over the same executions. Before: each stalled reader held its
//   whole batch (and the next one) in memory, 200-300 MB each, and 23 of them
//   crashed the server (V8 out of memory); one such list built a 500 MB answer.
// - Three concurrent 4 MiB requests of packed invalid statuses, sent again
//   every 100 ms. Before: each cost 6-8 s of synchronous CPU and about 750 MB,
//   and delayed another tenant's Get from 44 ms to 18.6 s.
//
// Memory: the executions are loaded straight into the database before the
// server starts, and the kernel's peak RSS of the server (VmHWM) is reset just
// before the attack. On PostgreSQL the server stays under 512 MB (README,
// "Limits and fairness"); with the embedded PGlite the database lives in the
// server's process and its own memory (several hundred MB, depending on the
// data) comes on top, so there the bound is on what the attack adds.
//
// Latency is measured on a machine shared with other work, in the same
// process as the attacker's client: the other tenant's client warms up, takes
// its baseline (before and after the attack), and samples one call at a time
// while the attack is in flight; the attacker's answers are not decoded, so
// that this process's own CPU does not slow the samples. The bound is the
// issue's, p99 under 100 ms, or twice the baseline p99 when the machine is so
// loaded that the baseline alone is above 50 ms: before the fixes, the same
// tenant waited 18.6 s. (A page of 4 MB costs the server's event loop tens of
// milliseconds, more on a busy machine, and on PGlite, whose statements run
// in the server's thread, its read as well: such pages every second raise
// another tenant's p99 to about that. The README says so; this test sends the
// one page of the scenario.)
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createDatabase, migrate } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";
import { backendName, createPgliteDataDir, postgresEnv } from "../support/backend.js";
import { insertLargeIncomplete } from "../support/executions.js";
import { workflowClient } from "../support/clients.js";
import { envelope, openWireStream, wireCall, type WireStream } from "../support/grpc-wire.js";
import { newTenant } from "../support/server.js";
import { killAll } from "../support/processes.js";
import { type ServerProcess, startServerProcess } from "../support/built-server.js";

/** The documented bound (README, "Limits and fairness"): the server's RSS on PostgreSQL... */
const RSS_BOUND = 512 * 1024 * 1024;
/** ...and what the attack adds to it, on either backend. */
const ATTACK_RSS_BOUND = 320 * 1024 * 1024;
const P99_BOUND_MS = 100;
const STALLED_READERS = 30;
const EXECUTIONS = 40;
const EXECUTION_BYTES = 2_000_000;
const SAMPLES = 300;

let server: ServerProcess;
let dataDir: string | undefined;
const attacker = newTenant();
const victim = newTenant();

beforeAll(async () => {
  const env: NodeJS.ProcessEnv = { LOG_LEVEL: "warn" };
  if (process.env.TEST_DATABASE_URL) Object.assign(env, postgresEnv());
  else {
    dataDir = await createPgliteDataDir("orchestrator-state-hostile-");
    env.DATA_DIR = dataDir;
  }
  // The executions go straight into the database before the server starts, so
  // that the server's memory is what the attack makes it hold, not what saving
  // 80 MB through it left behind. (A PGlite directory is opened by one process at a time.)
  const knex = createDatabase({ databaseUrl: env.DATABASE_URL, databaseDirectUrl: env.DATABASE_DIRECT_URL, dataDir, poolMax: 2, logger: silentLogger });
  try {
    await migrate(knex);
    await insertLargeIncomplete(knex, attacker, EXECUTIONS, EXECUTION_BYTES);
  } finally {
    await knex.destroy();
  }
  server = await startServerProcess(env, { entry: "test/failures/support/load-server.ts", nodeArgs: ["--expose-gc"], ipc: true });
  await workflowClient(server.baseUrl, victim).saveWorkflowExecution({
    execution: { executionId: "small", workflowName: "w", status: WorkflowStatus.RUNNING, context: { step: "fetch" } },
  });
}, 180_000);

afterAll(async () => {
  killAll();
  if (dataDir !== undefined) await fsp.rm(dataDir, { recursive: true, force: true });
});

/** The server's resident memory: now, and its peak since the last resetPeak. */
function memory(): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${server.child.pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

/** The server's event loop delay since the last call (test/failures/support/load-server.ts measures it). */
function loopDelay(): Promise<{ p99: number; max: number }> {
  return new Promise((resolve) => {
    server.child.once("message", (m) => resolve(m as { p99: number; max: number }));
    server.child.send("loop");
  });
}

/** Resets the kernel's peak RSS of the server (VmHWM) to its current RSS. */
function resetPeak(): void {
  fs.writeFileSync(`/proc/${server.child.pid}/clear_refs`, "5");
}

/** The victim's GetWorkflowExecution latencies, one call at a time. */
async function victimLatencies(n: number): Promise<number[]> {
  const client = workflowClient(server.baseUrl, victim);
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const res = await client.getWorkflowExecution({ executionId: "small" });
    ms.push(performance.now() - started);
    expect(res.execution?.executionId).toBe("small");
  }
  return ms;
}

function p99(ms: number[]): number {
  const sorted = [...ms].sort((a, b) => a - b);
  return sorted[Math.ceil(sorted.length * 0.99) - 1]!;
}

/** The latency bound of a run whose baseline p99 was `baseline` (see the top of the file). */
function p99Bound(baseline: number): number {
  return Math.max(P99_BOUND_MS, 2 * baseline);
}

/** The number of `field` 1 entries (executions, decisions...) in a unary gRPC answer's message. */
function countField1(answerHex: string): number {
  const body = Buffer.from(answerHex, "hex").subarray(5);
  let n = 0;
  for (let pos = 0; pos < body.length; ) {
    const tag = body[pos++]!;
    let length = 0;
    for (let shift = 0; ; shift += 7) {
      const b = body[pos++]!;
      length += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    if (tag === 0x0a) n++;
    pos += length;
  }
  return n;
}

/** Runs `attack` every `everyMs` (or as soon as the last round ended, when it took longer) until `until` settles. */
async function repeatUntil(until: Promise<unknown>, everyMs: number, attack: () => Promise<void>): Promise<{ rounds: number; failures: string[] }> {
  let done = false;
  void until.finally(() => (done = true));
  let rounds = 0;
  const failures: string[] = [];
  while (!done) {
    const started = Date.now();
    try {
      await attack();
    } catch (err) {
      failures.push(String(err));
    }
    rounds++;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, everyMs - (Date.now() - started))));
  }
  return { rounds, failures };
}

/** One HTTP/2 connection, as a client that is not careful opens one per burst. */
function connect(): http2.ClientHttp2Session {
  const session = http2.connect(server.baseUrl);
  session.on("error", () => {});
  return session;
}

describe(`a hostile tenant against a server process on ${backendName}`, () => {
  it(`${STALLED_READERS} stalled StreamIncompleteWorkflows readers over 2 MB executions and ListWorkflowExecutions of page size 1,000: RSS under 512 MB, another tenant's Get p99 under ${P99_BOUND_MS} ms`, async () => {
    await victimLatencies(50); // warm-up
    const baseline = await victimLatencies(SAMPLES / 2);
    const before = memory().rss;
    resetPeak();

    const sessions: http2.ClientHttp2Session[] = [];
    const readers: WireStream[] = [];
    try {
      for (let i = 0; i < STALLED_READERS; i++) {
        const session = connect();
        sessions.push(session);
        readers.push(
          openWireStream(session, {
            path: "/orchestration.state.v1.WorkflowStateService/StreamIncompleteWorkflows",
            headers: { "x-tenant-id": attacker },
            body: envelope(new Uint8Array()),
          }),
        );
      }
      // Every reader has its stream open and its first message on the way.
      const headers = await Promise.all(readers.map((r) => r.response));
      expect(headers.map((h) => h["content-type"])).toEqual(new Array(STALLED_READERS).fill("application/grpc+proto"));

      // And a page of 1,000 over the same executions, while the victim samples.
      await loopDelay(); // from here on: while the victim samples
      const lister = connect();
      sessions.push(lister);
      const sampling = victimLatencies(SAMPLES);
      const list = await wireCall(lister, {
        path: "/orchestration.state.v1.WorkflowStateService/ListWorkflowExecutions",
        headers: { "x-tenant-id": attacker },
        body: envelope(Uint8Array.of(0x08, 0xe8, 0x07)), // page_size: 1000
      });
      const attacked = await sampling;
      const { peak } = memory();
      const loop = await loopDelay();
      for (const s of sessions) s.destroy();
      baseline.push(...(await victimLatencies(SAMPLES / 2)));
      console.log(
        `${STALLED_READERS} stalled readers and a list on ${backendName}: victim Get p99 ${p99(attacked).toFixed(1)} ms ` +
          `(baseline ${p99(baseline).toFixed(1)} ms; server event loop delay max ${loop.max.toFixed(0)} ms); ` +
          `server RSS ${mb(before)} MB before, peak ${mb(peak)} MB`,
      );
      expect(list.trailers["grpc-status"]).toBe("0");
      // The page budget (4 MiB) holds two 2 MB executions.
      expect(countField1(list.body)).toBe(2);
      expect(peak - before).toBeLessThan(ATTACK_RSS_BOUND);
      if (backendName === "postgres") expect(peak).toBeLessThan(RSS_BOUND);
      expect(p99(attacked)).toBeLessThan(p99Bound(p99(baseline)));
    } finally {
      for (const s of sessions) s.destroy();
    }
  });

  it(`three concurrent 4 MiB requests of packed invalid statuses, again and again: another tenant's Get p99 under ${P99_BOUND_MS} ms`, async () => {
    await victimLatencies(50); // warm-up
    const baseline = await victimLatencies(SAMPLES / 2);
    // ListWorkflowExecutionsRequest.statuses (field 4), packed: 4 MiB of the undefined value 99.
    const count = 4 * 1024 * 1024 - 16;
    const payload = Buffer.alloc(1 + 4 + count, 99);
    payload[0] = (4 << 3) | 2;
    payload.set([(count & 0x7f) | 0x80, ((count >>> 7) & 0x7f) | 0x80, ((count >>> 14) & 0x7f) | 0x80, count >>> 21], 1);
    const body = envelope(payload);
    const codes = new Set<string>();
    const sampling = victimLatencies(SAMPLES);
    await loopDelay();
    const attacks = await repeatUntil(sampling, 100, async () => {
      // Three at once, each on a connection of its own.
      const sessions = [connect(), connect(), connect()];
      try {
        const answers = await Promise.all(
          sessions.map((session) =>
            wireCall(session, { path: "/orchestration.state.v1.WorkflowStateService/ListWorkflowExecutions", headers: { "x-tenant-id": attacker }, body }),
          ),
        );
        for (const a of answers) codes.add(a.trailers["grpc-status"] ?? a.headers["grpc-status"] ?? "none");
      } finally {
        for (const s of sessions) s.destroy();
      }
    });
    const attacked = await sampling;
    const loop = await loopDelay();
    baseline.push(...(await victimLatencies(SAMPLES / 2)));
    console.log(
      `${attacks.rounds * 3} 4 MiB invalid-enum requests on ${backendName}: victim Get p99 ${p99(attacked).toFixed(1)} ms ` +
        `(baseline ${p99(baseline).toFixed(1)} ms; server event loop delay max ${loop.max.toFixed(0)} ms)`,
    );
    expect(attacks.failures).toEqual([]);
    expect([...codes]).toEqual([String(Code.ResourceExhausted)]);
    expect(p99(attacked)).toBeLessThan(p99Bound(p99(baseline)));
  });
});

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(0);
}
