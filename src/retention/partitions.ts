import type { Knex } from "knex";
import type { RetentionPolicy } from "../../gen/orchestration/state/v1/retention_service_pb.js";
import type { RetentionDefaults } from "../config.js";
import { dropDecisionPartitionsBefore, ensureDecisionPartitions } from "../db/queries/decision-partitions.js";
import { effectiveRetention } from "./policy.js";

// Retention of routing decisions by whole months (routing_decisions is
// partitioned by routed_at; src/db/queries/decision-partitions.ts).
//
// Policies differ per tenant, and a month's partition holds every tenant's
// decisions: a partition is dropped only once every policy in force lets all
// of its rows go, that is once its whole range is older than the LONGEST
// routing_decision_max_age among the server default (which every tenant
// without a saved value follows, tenants to come included) and every saved
// policy. One policy that keeps decisions forever (0) keeps every partition.
// What a shorter policy lets go beyond that is deleted row by row, per tenant,
// as before (src/retention/apply.ts). Partitions also come and go only in the
// background pass: ApplyRetentionPolicy acts for one tenant and deletes rows.

/** Before when every decision may go under every policy in force (undefined: some policy keeps them forever). */
export function partitionDropCutoff(defaults: RetentionDefaults, saved: Iterable<RetentionPolicy>, now: number): Date | undefined {
  let longest = defaults.routingDecisionMaxAge;
  if (longest === 0) return undefined;
  for (const policy of saved) {
    const maxAge = effectiveRetention(policy, defaults).routingDecisionMaxAge;
    if (maxAge === 0) return undefined;
    longest = Math.max(longest, maxAge);
  }
  return new Date(now - longest * 1_000);
}

/** What one pass did to the partitions. */
export interface PartitionWork {
  created: string[];
  dropped: string[];
  /** Rows of the dropped partitions. */
  rows: number;
}

/**
 * Creates the months ahead (and splits recent months out of the default
 * partition), then drops the months every policy lets go. Run by one replica
 * at a time (the retention pass's lock), and under a lock of its own anyway.
 */
export async function maintainDecisionPartitions(
  knex: Knex,
  defaults: RetentionDefaults,
  saved: Iterable<RetentionPolicy>,
  now: number = Date.now(),
): Promise<PartitionWork> {
  const created = await ensureDecisionPartitions(knex, new Date(now));
  const cutoff = partitionDropCutoff(defaults, saved, now);
  if (cutoff === undefined) return { created, dropped: [], rows: 0 };
  return { created, ...(await dropDecisionPartitionsBefore(knex, cutoff)) };
}
