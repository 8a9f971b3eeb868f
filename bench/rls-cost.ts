// Benchmark: what row-level security costs per call. Every unit of work of a
// call runs bound to its tenant (src/tenancy/row-level-security.ts): the
// binding SELECT (tenant, role, deadline) travels with the unit's first
// statement (src/tenancy/pipelined-unit.ts). On PostgreSQL a single-statement
// unit (TenantScope.run, most RPCs) is ONE round trip, [binding, statement,
// Sync] as one implicit transaction, like the bare statement; it was four
// (BEGIN, binding, statement, COMMIT) before. What remains is the binding's
// execution and the policy's predicate.
//
// Three statements, those of B3 and B4 (bench/workloads.ts), each run three or
// four ways on the same PostgreSQL:
//
//   get      GetWorkflowExecution's SELECT (findExecution)
//   save     SaveWorkflowExecution's upsert (upsertExecution), over 1,000 executions
//   outcome  RecordTaskOutcome's increment (recordOutcome), on 10 hot agents
//
//   pg       the same SQL from a bare `pg` pool: no Knex, no transaction, no binding
//   plain    (get only) the same SELECT through Knex straight on the pool (findExecution's, unbound)
//   scoped   the query function through TenantScope, as the service runs it
//            without a call deadline (the load generator sets none)
//   +deadl.  the same with a call deadline (adds statement_timeout to the binding)
//   legacy   scoped, the way every unit ran before tenant units (a Knex
//            transaction: BEGIN, binding, statement, COMMIT: four round trips)
//
//   login    (get, with --login-role) the scoped SELECT with the server
//            connecting as a login role without BYPASSRLS (not a superuser):
//            the binding as the server sends it today, SET ROLE included
//   no-role  (get, with --login-role) the same, with a binding that sets the
//            tenant and the session settings but not the role: what the binding
//            could be for such a login role, whom the policies already bind
//
//   npx tsx bench/rls-cost.ts                       # DATABASE_URL or postgres://postgres@127.0.0.1:5432/test
//   npx tsx bench/rls-cost.ts --seconds=3 --concurrency=1,32 --rounds=3 --workloads=get,save,outcome
//   npx tsx bench/rls-cost.ts --workloads=get --login-role   # creates, uses and drops the login role orchestrator_rls_bench
//
// Each variant runs for the given seconds at each concurrency (workers calling
// back to back over a pool of 10 connections, Knex's or pg's), after a
// warm-up; variants alternate within a round, so that a machine busy with
// other work slows them alike. Prints calls/s and this process's CPU time per
// call (µs; less disturbed than calls/s by other processes on the machine), the
// ratios of calls/s to pg (scoped / pg is the issue's measure) and, for get,
// scoped / plain; with several rounds, the median ratios. The rows are deleted
// at the end.
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { Knex } from "knex";
import { createDatabase, migrate } from "../src/db/database.js";
import { recordOutcome } from "../src/db/queries/agent-statistics.js";
import { findExecution, upsertExecution, type SaveInput } from "../src/db/queries/workflow-executions.js";
import { silentLogger } from "../src/logging/logger.js";
import { TRANSACTION_SETTINGS_SELECT } from "../src/connection/session-settings.js";
import { runPipelinedUnit } from "../src/tenancy/pipelined-unit.js";
import { bindingStatement, TENANT_ROLE, TENANT_SETTING } from "../src/tenancy/row-level-security.js";
import type { TenantUnit } from "../src/tenancy/tenant-unit.js";
import { TenantScope } from "../src/tenancy/tenant-scope.js";
import { ADD_OUTCOME, SELECT_EXECUTION, UPSERT_EXECUTION } from "./lib/bare-sql.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const seconds = Number(arg("seconds", "3"));
const concurrencies = arg("concurrency", "1,10").split(",").map(Number);
const rounds = Number(arg("rounds", "1"));
const workloads = arg("workloads", "get,save,outcome").split(",");
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
// --json: print one JSON line at the end instead, {plain, scoped} calls/s of
// get at the last concurrency (bench/run.ts reports their ratio).
const json = args.includes("--json");
const log = (line: string) => (json ? console.error(line) : console.log(line));
const ROWS = 1_000;
const AGENTS = 10;
/** --login-role: a LOGIN role without BYPASSRLS, member of TENANT_ROLE (its table privileges), created for the run and dropped after. */
const LOGIN_ROLE = args.includes("--login-role") ? "orchestrator_rls_bench" : undefined;

const knex = createDatabase({ databaseUrl, poolMax: 10, logger: silentLogger });
await migrate(knex);
const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
let loginKnex: Knex | undefined;
if (LOGIN_ROLE !== undefined) {
  await knex.raw(`DROP ROLE IF EXISTS ${LOGIN_ROLE}`);
  await knex.raw(`CREATE ROLE ${LOGIN_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE ${TENANT_ROLE}`);
  const url = new URL(databaseUrl);
  url.username = LOGIN_ROLE;
  url.password = "";
  loginKnex = createDatabase({ databaseUrl: url.toString(), poolMax: 10, logger: silentLogger });
}
const tenant = randomUUID();
const other = randomUUID();
for (const t of [tenant, other]) {
  await knex.raw(
    `INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, started_at, context)
     SELECT ?, 'e-' || i, 'bench', 'RUNNING', now(), '{"k": "v"}' FROM generate_series(1, ${ROWS}) AS i`,
    [t],
  );
}

// A save of 3-4 KB of JSON, like B3's: an 8-step definition, context, step executions and outputs.
const steps = Array.from({ length: 8 }, (_, s) => ({
  stepId: `step-${s}`,
  name: `Step ${s}: gather, rank and summarize the sources`,
  requiredCapability: "text.summarize",
  dependsOn: s === 0 ? [] : [`step-${s - 1}`],
  parameters: { model: "large", temperature: 0.2, prompt: "Summarize the documents below for an engineer.".repeat(4) },
}));
function saveInput(i: number): SaveInput {
  return {
    columns: {
      execution_id: `s-${i % ROWS}`,
      workflow_name: "research-report",
      status: "RUNNING",
      definition: { name: "research-report", version: "3", steps },
      context: { customer: "acme", request: `Write a report on topic ${i}`, sources: [`https://example.com/${i}`] },
      step_executions: steps.slice(0, (i % 8) + 1).map((s, k) => ({ stepId: s.stepId, status: k < i % 8 ? "COMPLETED" : "RUNNING", attempt: 1 })),
      step_outputs: Object.fromEntries(steps.slice(0, i % 8).map((s) => [s.stepId, { summary: "The sources agree on the main points. ".repeat(6) }])),
      error_message: "",
      initiated_by: "orchestrator-7",
      labels: { team: "research" },
    },
    startedAt: null,
    completedAt: null,
    terminal: false,
  };
}

function saveValues(i: number): unknown[] {
  const c = saveInput(i).columns;
  const json = (v: unknown) => (v === null ? null : JSON.stringify(v));
  return [tenant, c.execution_id, c.workflow_name, c.status, json(c.definition), json(c.context), json(c.step_executions),
    json(c.step_outputs), c.error_message, c.initiated_by, json(c.labels)];
}

type Variant = (i: number) => Promise<unknown>;
const scope = new TenantScope(tenant, knex);
// What every unit did before tenant units: a Knex transaction (BEGIN), the
// binding as its first statement, the work, COMMIT. Four round trips.
const legacy = {
  tenantId: tenant,
  run: <T>(work: (db: Knex) => Promise<T>): Promise<T> =>
    knex.transaction(async (trx) => {
      await trx.raw(`SELECT set_config('app.tenant_id', ?, true), set_config('role', '${TENANT_ROLE}', true)`, [tenant]);
      return work(trx);
    }),
} as unknown as TenantScope;
/**
 * A scope on the login role's pool whose single-statement units run on the
 * pipelined path (as the server's do) with `binding` as the binding SELECT:
 * the same unit, statement and round trip whatever the binding holds.
 */
function loginScope(binding: (tenantId: string) => { sql: string; values: string[] }): TenantScope {
  const db = loginKnex!;
  const client = db.client as { acquireConnection(): Promise<unknown>; releaseConnection(connection: unknown): Promise<unknown> };
  return {
    tenantId: tenant,
    run: async <T>(work: (db: Knex) => Promise<T>): Promise<T> => {
      const unit: TenantUnit = { kind: "statement", checkDeadline: () => {}, binding: () => binding(tenant) };
      const connection = await client.acquireConnection();
      try {
        return await runPipelinedUnit(db, connection, unit, work);
      } finally {
        await client.releaseConnection(connection);
      }
    },
  } as unknown as TenantScope; // findExecution uses tenantId and run only
}
const NO_ROLE_BINDING = `SELECT set_config('${TENANT_SETTING}', $1, true), ${TRANSACTION_SETTINGS_SELECT}`;
const asLogin = LOGIN_ROLE === undefined ? undefined : loginScope((t) => bindingStatement(t, undefined));
const asLoginNoRole = LOGIN_ROLE === undefined ? undefined : loginScope((t) => ({ sql: NO_ROLE_BINDING, values: [t] }));
// A fresh deadline per call, as tenantScope(ctx) gives each call.
const bounded = () => scope.withTimeout(10_000);
const outcome = (i: number) => ({ agentKey: `hot-agent-${i % AGENTS}`, success: i % 4 !== 0, durationUs: 2_000_000 });
const found = (row: unknown) => {
  if (row === undefined) throw new Error("benchmark row not found");
  return row;
};
const all: Record<string, Record<string, Variant>> = {
  get: {
    pg: async (i) => found((await pool.query(SELECT_EXECUTION, [tenant, `e-${(i % ROWS) + 1}`])).rows[0]),
    plain: async (i) => found((await knex.raw("SELECT * FROM workflow_executions WHERE tenant_id = ? AND execution_id = ?", [tenant, `e-${(i % ROWS) + 1}`])).rows[0]),
    scoped: async (i) => found(await findExecution(scope, `e-${(i % ROWS) + 1}`)),
    "scoped+deadline": async (i) => found(await findExecution(bounded(), `e-${(i % ROWS) + 1}`)),
    legacy: async (i) => found(await findExecution(legacy, `e-${(i % ROWS) + 1}`)),
    ...(asLogin === undefined || asLoginNoRole === undefined
      ? {}
      : {
          login: async (i: number) => found(await findExecution(asLogin, `e-${(i % ROWS) + 1}`)),
          "no-role": async (i: number) => found(await findExecution(asLoginNoRole, `e-${(i % ROWS) + 1}`)),
        }),
  },
  save: {
    pg: (i) => pool.query(UPSERT_EXECUTION, saveValues(i)),
    scoped: (i) => upsertExecution(scope, saveInput(i)),
    "scoped+deadline": (i) => upsertExecution(bounded(), saveInput(i)),
    legacy: (i) => upsertExecution(legacy, saveInput(i)),
  },
  outcome: {
    pg: (i) => {
      const o = outcome(i);
      return pool.query(ADD_OUTCOME, [tenant, o.agentKey, o.success ? 1 : 0, o.success ? 0 : 1, o.durationUs]);
    },
    scoped: (i) => recordOutcome(scope, outcome(i)),
    "scoped+deadline": (i) => recordOutcome(bounded(), outcome(i)),
    legacy: (i) => recordOutcome(legacy, outcome(i)),
  },
};

/** Calls/s, and this process's CPU time per call (µs): Knex, Objection, pg, the unit. */
async function run(variant: Variant, concurrency: number, ms: number): Promise<{ rate: number; cpuUs: number }> {
  const end = Date.now() + ms;
  let calls = 0;
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = w; Date.now() < end; i += concurrency) {
        await variant(i);
        calls++;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return { rate: calls / (ms / 1000), cpuUs: (used.user + used.system) / calls };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  const { rows: [{ version }] } = await knex.raw<{ rows: { version: string }[] }>("SELECT version()");
  log(`${version.split(",")[0]}; ${seconds} s per measurement, ${rounds} round(s)`);
  let getRates: Record<string, number> = {};
  for (const workload of workloads) {
    const variants = all[workload]!;
    for (const concurrency of concurrencies) {
      const ratios: Record<string, number[]> = {};
      for (let round = 0; round < rounds; round++) {
        const rates: Record<string, number> = {};
        const cpus: Record<string, number> = {};
        for (const [name, variant] of Object.entries(variants)) {
          await run(variant, concurrency, 500); // warm-up: connections, plans
          ({ rate: rates[name]!, cpuUs: cpus[name]! } = await run(variant, concurrency, seconds * 1000));
        }
        const line = Object.entries(rates).map(([name, rate]) => `${name} ${Math.round(rate)}/s ${Math.round(cpus[name]!)}µs`).join(", ");
        const measured: Record<string, number> = {
          "scoped/pg": rates.scoped! / rates.pg!,
          "scoped+deadline/pg": rates["scoped+deadline"]! / rates.pg!,
          "legacy/pg": rates.legacy! / rates.pg!,
          ...(rates.plain === undefined ? {} : { "scoped/plain": rates.scoped! / rates.plain }),
          ...(rates.login === undefined ? {} : { "login/plain": rates.login / rates.plain!, "no-role/plain": rates["no-role"]! / rates.plain!, "no-role/login": rates["no-role"]! / rates.login }),
        };
        for (const [k, v] of Object.entries(measured)) (ratios[k] ??= []).push(v);
        const shown = Object.entries(measured).map(([k, v]) => `${k} = ${v.toFixed(2)}`).join(", ");
        log(`${workload} concurrency ${concurrency}: ${line}; ${shown}`);
        if (workload === "get") getRates = rates;
      }
      if (rounds > 1) {
        const shown = Object.entries(ratios).map(([k, v]) => `${k} = ${median(v).toFixed(2)}`).join(", ");
        log(`${workload} concurrency ${concurrency}, median of ${rounds}: ${shown}`);
      }
    }
  }
  if (json) console.log(JSON.stringify({ plain: getRates.plain, scoped: getRates.scoped }));
} finally {
  // Outside a tenant unit: the benchmark connects as a superuser (or a role
  // with BYPASSRLS) to clean up; otherwise row-level security hides the rows.
  for (const table of ["workflow_executions", "agent_statistics"]) await knex(table).whereIn("tenant_id", [tenant, other]).delete();
  await pool.end();
  await loginKnex?.destroy();
  if (LOGIN_ROLE !== undefined) await knex.raw(`DROP ROLE IF EXISTS ${LOGIN_ROLE}`);
  await knex.destroy();
}
