// Baseline of B5: the rows StreamIncompleteWorkflows returns, read by a bare
// `pg` client with a server-side cursor (DECLARE ... FETCH 1000) in one
// process, in the stream's order. Prints one JSON line: rows, rows/s.
//
//   tsx bench/baselines/pg-stream.ts '{"databaseUrl":"…","tenant":"…"}'
import pg from "pg";

const spec = JSON.parse(process.argv[2]!) as { databaseUrl: string; tenant: string };
const client = new pg.Client({ connectionString: spec.databaseUrl });
await client.connect();
const start = performance.now();
let rows = 0;
await client.query("BEGIN");
await client.query(
  `DECLARE incomplete NO SCROLL CURSOR FOR
     SELECT * FROM workflow_executions
      WHERE tenant_id = $1 AND status IN ('PENDING', 'RUNNING', 'BLOCKED')
      ORDER BY started_at, execution_id`,
  [spec.tenant],
);
for (;;) {
  const batch = await client.query("FETCH 1000 FROM incomplete");
  rows += batch.rowCount ?? 0;
  if ((batch.rowCount ?? 0) < 1000) break;
}
await client.query("COMMIT");
const seconds = (performance.now() - start) / 1000;
await client.end();
console.log(JSON.stringify({ rows, seconds, rate: rows / seconds }));
