import { tenantTable } from "./tenant-table.js";
import type { RowOf } from "./plain-rows.js";

/**
 * One row of `routing_decision_ids`: the id of one stored decision of a tenant
 * (migration 20261205300000), unique per tenant across every month of
 * routing_decisions, which cannot have that key itself (it is partitioned by
 * routed_at). Written and deleted with its decision
 * (src/db/queries/routing-decisions.ts).
 */
export class RoutingDecisionIdModel extends tenantTable("routing_decision_ids", "decision_id") {
  /** A lowercase UUID. */
  decision_id!: string;
  /** The decision's routed_at: retention finds the ids of a month it dropped by it. */
  routed_at!: string;
}

/** One row of `routing_decision_ids` as a plain object (see ./plain-rows.ts). */
export type DecisionIdRow = RowOf<RoutingDecisionIdModel>;
