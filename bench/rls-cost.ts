// Benchmark: what row-level security costs per call. Every unit of work of a
// call runs in a tenant transaction (src/tenancy/row-level-security.ts):
// BEGIN, one SELECT binding tenant, role and deadline, the statement, COMMIT:
// four round trips where a bare statement needs one, plus the policy's
// predicate. This measures GetWorkflowExecution's query both ways on
// PostgreSQL:
//
//   plain   the same SELECT (with its tenant filter) straight on the pool, no transaction
//   scoped  findExecution() through TenantScope, as the service runs it (RLS transaction)
//   +deadl. the same with a call deadline (adds statement_timeout to the binding SELECT)
//
//   npx tsx bench/rls-cost.ts                       # DATABASE_URL or postgres://postgres@127.0.0.1:5432/test
//   npx tsx bench/rls-cost.ts --seconds=5 --concurrency=1,10
//
// Each variant runs for the given seconds at each concurrency (workers calling
// back to back over a pool of 10 connections), after a warm-up, over 1,000
// executions of a fresh tenant among 1,000 of another; the rows are deleted at
// the end. Prints calls/s for each and the ratio scoped / plain.
import { randomUUID } from "node:crypto";
import { createDatabase, migrate } from "../src/db/database.js";
import { WorkflowExecutionModel } from "../src/db/models/workflow-execution.js";
import { findExecution } from "../src/db/queries/workflow-executions.js";
import { silentLogger } from "../src/logging/logger.js";
import { TenantScope } from "../src/tenancy/tenant-scope.js";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const seconds = Number(arg("seconds", "3"));
const concurrencies = arg("concurrency", "1,10").split(",").map(Number);
const databaseUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const ROWS = 1_000;

const knex = createDatabase({ databaseUrl, poolMax: 10, logger: silentLogger });
await migrate(knex);
const tenant = randomUUID();
const other = randomUUID();
for (const t of [tenant, other]) {
  await knex.raw(
    `INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, started_at, context)
     SELECT ?, 'e-' || i, 'bench', 'RUNNING', now(), '{"k": "v"}' FROM generate_series(1, ${ROWS}) AS i`,
    [t],
  );
}

type Variant = (id: string) => Promise<unknown>;
const scope = new TenantScope(tenant, knex);
const variants: Record<string, Variant> = {
  plain: async (id) => WorkflowExecutionModel.query(knex).findOne({ tenant_id: tenant, execution_id: id }),
  scoped: (id) => findExecution(scope, id),
  // A fresh deadline per call, as tenantScope(ctx) gives each call.
  "scoped+deadline": (id) => findExecution(scope.withTimeout(10_000), id),
};

async function run(variant: Variant, concurrency: number, ms: number): Promise<number> {
  const end = Date.now() + ms;
  let calls = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = w; Date.now() < end; i += concurrency) {
        const row = await variant(`e-${(i % ROWS) + 1}`);
        if (row === undefined) throw new Error("benchmark row not found");
        calls++;
      }
    }),
  );
  return calls / (ms / 1000);
}

try {
  const { rows: [{ version }] } = await knex.raw<{ rows: { version: string }[] }>("SELECT version()");
  console.log(`${version.split(",")[0]}; ${seconds} s per measurement`);
  for (const concurrency of concurrencies) {
    const rates: Record<string, number> = {};
    for (const [name, variant] of Object.entries(variants)) {
      await run(variant, concurrency, 500); // warm-up: connections, plans
      rates[name] = await run(variant, concurrency, seconds * 1000);
    }
    const line = Object.entries(rates).map(([name, rate]) => `${name} ${Math.round(rate)} calls/s`).join(", ");
    const ratio = rates.scoped! / rates.plain!;
    console.log(`concurrency ${concurrency}: ${line}; scoped/plain = ${ratio.toFixed(2)} (${Math.round((1 / ratio - 1) * 100)}% more time per call)`);
  }
} finally {
  // Outside a tenant transaction: the benchmark connects as a superuser (or a
  // role with BYPASSRLS) to clean up; otherwise row-level security hides the rows.
  await knex("workflow_executions").whereIn("tenant_id", [tenant, other]).delete();
  await knex.destroy();
}
