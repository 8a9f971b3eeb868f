import type { Knex } from "knex";
import { ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import type { RoutingDecision } from "../../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { decision as baseDecision, micros } from "../../support/decisions.js";

// Helpers of the group commit tests (group-commit.test.ts, group-commit.postgres.test.ts).

export const RECORD = "orchestration.state.v1.RoutingAuditService/RecordRoutingDecision";

/** A valid decision with a fresh id and both durations set (as the server returns them). */
export const decision = (fields: Parameters<typeof baseDecision>[0] = {}) =>
  baseDecision({ routingDuration: micros(1_500), taskDuration: micros(2_000_000), ...fields });

/** The recording INSERTs (insertDecisions) a Knex sends for `tenant`: the decision ids of each, as the database received them. */
export function watchInserts(knex: Knex, tenant: string): { inserts: string[][]; stop(): void } {
  const inserts: string[][] = [];
  const onQuery = (q: { sql: string; bindings?: unknown[] }) => {
    if (!q.sql.includes("INSERT INTO routing_decisions") || !q.sql.includes("jsonb_to_recordset") || !q.bindings?.includes(tenant)) return;
    const rows = q.bindings.find((b): b is string => typeof b === "string" && b.startsWith("["));
    inserts.push((JSON.parse(rows!) as { decision_id: string }[]).map((r) => r.decision_id));
  };
  knex.on("query", onQuery);
  return { inserts, stop: () => knex.off("query", onQuery) };
}

export type Settled = PromiseSettledResult<{ decision?: RoutingDecision }>;
export const value = (r: Settled) => (r.status === "fulfilled" ? r.value.decision! : expect.unreachable(`failed: ${String((r as PromiseRejectedResult).reason)}`));
export const codeOf = (r: Settled) => (r.status === "fulfilled" ? "ok" : ConnectError.from(r.reason).code);

