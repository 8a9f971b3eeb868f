import type { Knex } from "knex";
import type { WorkflowExecution } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";

/** A workflow_executions status as the database stores it. */
export type DbStatus = "PENDING" | "RUNNING" | "BLOCKED" | "COMPLETED" | "FAILED" | "CANCELLED";
export const STATUSES: DbStatus[] = ["PENDING", "RUNNING", "BLOCKED", "COMPLETED", "FAILED", "CANCELLED"];
export const INCOMPLETE: DbStatus[] = ["PENDING", "RUNNING", "BLOCKED"];
export const TERMINAL: DbStatus[] = ["COMPLETED", "FAILED", "CANCELLED"];

/**
 * A row as a test seeds it: times are microseconds after BASE. completedUs
 * null is no completed_at; left out, terminal rows complete 5 s after they
 * started and incomplete rows have none.
 */
export interface Row {
  id: string;
  workflow: string;
  status: DbStatus;
  startedUs: number;
  completedUs?: number | null;
}

/** 2026-11-26T00:00:00Z in milliseconds. */
export const BASE_MS = 1_795_651_200_000;

/** The ISO-8601 text (microsecond precision) of BASE + `us` (us may be negative). */
export function iso(us: number): string {
  const whole = Math.floor(us / 1_000_000);
  const frac = String(us - whole * 1_000_000).padStart(6, "0");
  return `${new Date(BASE_MS + whole * 1000).toISOString().slice(0, 19)}.${frac}Z`;
}

/** The protobuf Timestamp of BASE + `us` (us may be negative). */
export function ts(us: number) {
  const whole = Math.floor(us / 1_000_000);
  return { seconds: BigInt(BASE_MS / 1000 + whole), nanos: (us - whole * 1_000_000) * 1000 };
}

/** Microseconds after BASE of a returned execution's started_at. */
export function startedUs(e: WorkflowExecution): number {
  return Number(e.startedAt!.seconds - BigInt(BASE_MS / 1000)) * 1_000_000 + e.startedAt!.nanos / 1000;
}

/** The completed_at a row is seeded with, in microseconds after BASE (null: none). */
function completedUs(r: Row): number | null {
  if (r.completedUs !== undefined) return r.completedUs;
  return TERMINAL.includes(r.status) ? r.startedUs + 5_000_000 : null;
}

/** Inserts rows for `tenant` straight into workflow_executions, in chunks of 500. */
export async function seedExecutions(knex: Knex, tenant: string, rows: readonly Row[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) {
    await knex("workflow_executions").insert(
      rows.slice(i, i + 500).map((r) => {
        const completed = completedUs(r);
        return {
          tenant_id: tenant,
          execution_id: r.id,
          workflow_name: r.workflow,
          status: r.status,
          started_at: iso(r.startedUs),
          completed_at: completed === null ? null : iso(completed),
        };
      }),
    );
  }
}

/** A small deterministic PRNG (mulberry32), so that failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Inserts `count` RUNNING executions of `tenant` whose context holds about
 * `bytes` bytes of random hex (incompressible enough that gzip does not shrink
 * a message below the HTTP/2 flow-control window), `<prefix>-0001` first.
 */
export async function insertLargeIncomplete(knex: Knex, tenant: string, count: number, bytes: number, prefix = "big"): Promise<void> {
  await knex.raw(
    `INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, context, started_at)
     SELECT ?::uuid, ? || '-' || lpad(i::text, 4, '0'), 'large', 'RUNNING',
            jsonb_build_object('blob', (SELECT string_agg(md5(random()::text || g::text || i::text), '')
                                        FROM generate_series(1, ?::int) AS g)),
            timestamptz '2026-11-26T00:00:00Z' + i * interval '1 millisecond'
     FROM generate_series(1, ?::int) AS i`,
    [tenant, prefix, Math.ceil(bytes / 32), count],
  );
}
