import { deleteTerminalBatch } from "../db/queries/workflow-executions.js";
import { deleteRoutedBeforeBatch, deleteUnstoredDecisionIdsBatch } from "../db/queries/routing-decisions.js";
import * as queries from "../db/queries/retention.js";
import type { TenantScope } from "../tenancy/tenant-scope.js";
import type { EffectiveRetention } from "./policy.js";

// Applying one tenant's policy in force: what ApplyRetentionPolicy and the
// background retention both run. Each kind of record is deleted in batches
// of at most `batchSize` rows, each batch one statement committed on its own
// (no long lock, and a failure part way keeps what was deleted); a dry run
// counts instead.

/** Records deleted (or that a dry run would delete), by kind; the fields of the RetentionCounts message. */
export interface RetentionCounts {
  completedExecutions: number;
  failedExecutions: number;
  cancelledExecutions: number;
  routingDecisions: number;
  closedCircuitBreakers: number;
  circuitBreakerTransitions: number;
}

/** Counts of nothing: every kind at zero. */
export function noCounts(): RetentionCounts {
  return { completedExecutions: 0, failedExecutions: 0, cancelledExecutions: 0, routingDecisions: 0, closedCircuitBreakers: 0, circuitBreakerTransitions: 0 };
}

/** How to apply a policy. */
export interface ApplyOptions {
  /** Count what would be deleted; delete nothing. */
  dryRun: boolean;
  /** Rows per DELETE. */
  batchSize: number;
  /** The time max ages count back from (epoch ms); default now. */
  now?: number;
  /** Asked between batches; true stops the work there (the server is shutting down). */
  stopped?: () => boolean;
  /** Told each batch's deletions: resource (as in the metrics), execution status ("" for others), rows. */
  onDeleted?: (resource: string, status: string, rows: number) => void;
}

/** What applying a policy did. */
export interface RetentionOutcome {
  counts: RetentionCounts;
  /** Terminal executions past their max age kept only by a legal hold. */
  held: number;
  /** False when `stopped` ended the work early. */
  finished: boolean;
}

/** One kind of record and how to count and delete its expired rows. */
interface Kind {
  key: keyof RetentionCounts;
  maxAge: keyof EffectiveRetention;
  resource: string;
  status: string;
  count(scope: TenantScope, cutoff: string): Promise<{ deletable: number; held: number }>;
  deleteBatch(scope: TenantScope, cutoff: string, limit: number): Promise<number>;
  /** After the deletes, in batches too: what they leave behind that is not a record of its own (not counted). */
  sweep?(scope: TenantScope, cutoff: string, limit: number): Promise<number>;
}

const execution = (key: keyof RetentionCounts, maxAge: keyof EffectiveRetention, status: string): Kind => ({
  key,
  maxAge,
  resource: "workflow_execution",
  status,
  count: (scope, cutoff) => queries.countExpiredExecutions(scope, status, cutoff),
  // The executions' own batch delete: it never deletes a held or incomplete execution.
  deleteBatch: (scope, cutoff, limit) => deleteTerminalBatch(scope, { completedBefore: cutoff, workflowName: "", statuses: [status] }, limit),
});

const plain = (
  key: keyof RetentionCounts,
  maxAge: keyof EffectiveRetention,
  resource: string,
  count: (scope: TenantScope, cutoff: string) => Promise<number>,
  deleteBatch: Kind["deleteBatch"],
): Kind => ({ key, maxAge, resource, status: "", count: async (scope, cutoff) => ({ deletable: await count(scope, cutoff), held: 0 }), deleteBatch });

// Closed breakers go before transitions: a breaker deleted in this pass no
// longer keeps its old transitions.
const KINDS: readonly Kind[] = [
  execution("completedExecutions", "completedExecutionMaxAge", "COMPLETED"),
  execution("failedExecutions", "failedExecutionMaxAge", "FAILED"),
  execution("cancelledExecutions", "cancelledExecutionMaxAge", "CANCELLED"),
  {
    ...plain("routingDecisions", "routingDecisionMaxAge", "routing_decision", queries.countDecisionsBefore, deleteRoutedBeforeBatch),
    // The ids of the months dropped whole (src/retention/partitions.ts), which
    // every tenant's cutoff is past.
    sweep: deleteUnstoredDecisionIdsBatch,
  },
  plain("closedCircuitBreakers", "closedCircuitBreakerMaxAge", "circuit_breaker", queries.countClosedBreakersBefore, queries.deleteClosedBreakersBatch),
  plain("circuitBreakerTransitions", "circuitBreakerTransitionMaxAge", "circuit_breaker_transition", queries.countTransitionsBefore, queries.deleteTransitionsBatch),
];

/** Applies `policy` to the scope's tenant (or, with dryRun, counts what it would delete). */
export async function applyRetention(scope: TenantScope, policy: EffectiveRetention, options: ApplyOptions): Promise<RetentionOutcome> {
  const now = options.now ?? Date.now();
  const counts = noCounts();
  let held = 0;
  for (const kind of KINDS) {
    const maxAge = policy[kind.maxAge];
    if (maxAge === 0) continue; // kept forever
    const cutoff = new Date(now - maxAge * 1_000).toISOString();
    if (options.dryRun) {
      const found = await kind.count(scope, cutoff);
      counts[kind.key] = found.deletable;
      held += found.held;
      continue;
    }
    for (;;) {
      if (options.stopped?.() === true) return { counts, held, finished: false };
      const n = await kind.deleteBatch(scope, cutoff, options.batchSize);
      counts[kind.key] += n;
      if (n > 0) options.onDeleted?.(kind.resource, kind.status, n);
      if (n < options.batchSize) break;
    }
    while (kind.sweep !== undefined) {
      if (options.stopped?.() === true) return { counts, held, finished: false };
      if ((await kind.sweep(scope, cutoff, options.batchSize)) < options.batchSize) break;
    }
    // Counted once the rest is deleted: the held ones are then all that is left.
    if (kind.status !== "") held += (await kind.count(scope, cutoff)).held;
  }
  return { counts, held, finished: true };
}
