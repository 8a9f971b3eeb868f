// The raw-pg baselines of B1-B4: the same statements our queries run (but
// for the decision ids B1 and B2 also write: see ../lib/bare-sql.ts), with
// the same row content (bench/workloads.ts through our own row converters),
// sent by a bare `pg` pool from `concurrency` workers calling back to back:
// no gRPC, no transaction, no row-level security binding, no ORM. Prints one
// JSON line like the load generator. Run pinned to the server's core by
// bench/run.ts:
//
//   tsx bench/baselines/pg-workloads.ts '{"databaseUrl":"…","tenant":"…","workload":"B1","concurrency":32,"poolMax":10,"seconds":5,"warmupSeconds":1}'
import pg from "pg";
import { decisionToColumns } from "../../src/services/routing-audit/decision-row.js";
import { executionToColumns } from "../../src/services/workflow-state/execution-row.js";
import {
  ADD_OUTCOME, DECISION_COLUMNS, decisionParameters, INSERT_DECISION, INSERT_DECISIONS_UNNEST, SELECT_EXECUTION, UPSERT_EXECUTION,
} from "../lib/bare-sql.js";
import { LatencyRecorder, type Measurement } from "../lib/stats.js";
import { B2_BATCH, B3_EXECUTIONS, B4_AGENTS, decision, execution, type UnaryWorkload } from "../workloads.js";

interface Spec {
  databaseUrl: string;
  tenant: string;
  workload: Exclude<UnaryWorkload, "B0">;
  concurrency: number;
  poolMax: number;
  seconds: number;
  warmupSeconds: number;
}

function decisionValues(i: number): unknown[] {
  return decisionParameters(decisionToColumns(decision(i)));
}

/** The statement and parameters of call `i`: built before the clock starts, like the load generator's bodies. */
function statement(spec: Spec, i: number): [string, unknown[]] {
  const tenant = spec.tenant;
  switch (spec.workload) {
    case "B1":
      return [INSERT_DECISION, [tenant, ...decisionValues(i)]];
    case "B2": {
      const rows = Array.from({ length: B2_BATCH }, (_, k) => decisionValues(i * B2_BATCH + k));
      return [INSERT_DECISIONS_UNNEST, [tenant, ...DECISION_COLUMNS.map((_, col) => rows.map((r) => r[col]))]];
    }
    case "B3-save": {
      const c = executionToColumns(execution(i));
      const json = (v: unknown) => (v === null ? null : JSON.stringify(v));
      return [
        UPSERT_EXECUTION,
        [tenant, c.execution_id, c.workflow_name, c.status, json(c.definition), json(c.context), json(c.step_executions),
          json(c.step_outputs), c.error_message, c.initiated_by, json(c.labels)],
      ];
    }
    case "B3-get":
      return [SELECT_EXECUTION, [tenant, `exec-${i % B3_EXECUTIONS}`]];
    case "B4": {
      const success = i % 4 !== 0;
      return [ADD_OUTCOME, [tenant, `hot-agent-${i % B4_AGENTS}`, success ? 1 : 0, success ? 0 : 1, 2_000_000]];
    }
  }
}

const ringSizes: Record<Spec["workload"], number> = { B1: 2_000, B2: 64, "B3-save": 1_000, "B3-get": 1_000, B4: 40 };

const spec = JSON.parse(process.argv[2]!) as Spec;
const ring = Array.from({ length: ringSizes[spec.workload] }, (_, i) => statement(spec, i));
// B1 and B2 need a fresh decision id per insert; the ring repeats content otherwise.
const freshIds = spec.workload === "B1" || spec.workload === "B2";
const pool = new pg.Pool({ connectionString: spec.databaseUrl, max: spec.poolMax });

const latencies = new LatencyRecorder();
let measuring = false;
let stopping = false;
let next = 0;
let calls = 0;
let errors = 0;

async function worker(): Promise<void> {
  while (!stopping) {
    const [sql, params] = ring[next++ % ring.length]!;
    const values = freshIds ? withFreshIds(params) : params;
    const counted = measuring;
    const start = performance.now();
    try {
      await pool.query(sql, values);
      if (counted && measuring) {
        calls++;
        latencies.add(performance.now() - start);
      }
    } catch (err) {
      if (counted && measuring) errors++;
      if (errors === 1) console.error(err);
    }
  }
}

function withFreshIds(params: unknown[]): unknown[] {
  const copy = [...params];
  copy[1] = Array.isArray(copy[1]) ? (copy[1] as unknown[]).map(() => crypto.randomUUID()) : crypto.randomUUID();
  return copy;
}

const workers = Array.from({ length: spec.concurrency }, worker);
await new Promise((resolve) => setTimeout(resolve, spec.warmupSeconds * 1000));
measuring = true;
const start = performance.now();
await new Promise((resolve) => setTimeout(resolve, spec.seconds * 1000));
const elapsed = (performance.now() - start) / 1000;
measuring = false;
stopping = true;
await Promise.all(workers);
await pool.end();
const result: Measurement = { rate: calls / elapsed, ...latencies.summary(), errors };
console.log(JSON.stringify(result));
