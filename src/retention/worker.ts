import type { Knex } from "knex";
import pg from "pg";
import type { RetentionDefaults } from "../config.js";
import { sessionConnectionConfig } from "../db/database.js";
import { retentionTenants } from "../db/queries/maintenance.js";
import type { Logger } from "../logging/logger.js";
import type { Metrics } from "../metrics/metrics.js";
import { TenantScope } from "../tenancy/tenant-scope.js";
import { applyRetention, noCounts, type RetentionCounts } from "./apply.js";
import { maintainDecisionPartitions } from "./partitions.js";
import { effectiveRetention, policyFromJson, POLICY_FIELDS } from "./policy.js";

// The background retention: every `intervalMs`, one pass that first keeps
// the monthly partitions of routing_decisions (creates those ahead, drops
// those every policy lets go: src/retention/partitions.ts), then visits every
// tenant with something to delete, applying each tenant's policy in force in
// bounded batches (src/retention/apply.ts).
//
// One replica at a time: a pass runs only while its replica holds a
// PostgreSQL session-level advisory lock, on a connection of its own opened
// for the pass and closed after it (so that the server releases the lock when
// the pass ends, or when the process or its connection dies); the other
// replicas skip that round. Inside one process (PGlite has one connection, whose session every
// caller shares, so the advisory lock cannot tell two callers apart) a pass
// also takes an in-process lock per database. Even if two passes did overlap
// (a connection lost mid-pass frees the lock), no row could be deleted
// twice: each batch is one DELETE, and a row deleted by one is not there for
// the other; the metrics count what each DELETE deleted.

/** What the worker needs. */
export interface RetentionWorkerOptions {
  knex: Knex;
  logger: Logger;
  metrics?: Metrics;
  /** The policy of tenants that saved none, and of fields a saved one leaves unset. */
  defaults: RetentionDefaults;
  /** Time between two passes (ms); 0: no background passes (runOnce still works). */
  intervalMs: number;
  /** Rows per DELETE. */
  batchSize: number;
  /** Time before the first pass (ms); default a random part of min(intervalMs, 60 s), so replicas started together spread out. */
  firstDelayMs?: number;
  /** Runs a pass in a span of its own (tracing on), so that its SQL is traced. */
  inSpan?: <T>(name: string, work: () => Promise<T>) => Promise<T>;
}

/** What one pass did. */
export type PassResult =
  | { outcome: "completed" | "stopped"; tenants: number; deleted: RetentionCounts }
  | { outcome: "skipped" };

/** The advisory lock key of retention passes (any constant bigint; this one spells "retain"). */
export const RETENTION_LOCK_KEY = "114100116097105110";

/** Databases (Knex instances) on which a pass of this process is running. */
const runningOn = new WeakSet<Knex>();

/** Runs retention passes in the background. */
export class RetentionWorker {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private current: Promise<unknown> | undefined;

  constructor(private readonly options: RetentionWorkerOptions) {}

  /** Schedules the passes (nothing when intervalMs is 0). */
  start(): void {
    if (this.options.intervalMs === 0) return;
    const first = this.options.firstDelayMs ?? Math.round(Math.min(this.options.intervalMs, 60_000) * (0.5 + Math.random() / 2));
    this.schedule(first);
  }

  /** Stops scheduling, ends a running pass after its current batch, and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.current?.catch(() => {});
  }

  /**
   * Runs one pass now, unless another pass holds the lock (this process's or
   * another replica's): then resolves with "skipped" at once.
   */
  async runOnce(): Promise<PassResult> {
    const { inSpan } = this.options;
    const run = this.locked(() => (inSpan === undefined ? this.pass() : inSpan("retention pass", () => this.pass())));
    this.current = run;
    const runs = this.options.metrics?.retentionRuns;
    try {
      const result = await run;
      runs?.inc({ outcome: result.outcome === "stopped" ? "completed" : result.outcome });
      return result;
    } catch (err) {
      runs?.inc({ outcome: "failed" });
      throw err;
    } finally {
      if (this.current === run) this.current = undefined;
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.runOnce()
        .catch((err: unknown) => this.options.logger.warn("retention pass failed; the next pass continues where it stopped", { error: err }))
        .finally(() => this.schedule(this.options.intervalMs));
    }, delayMs);
    // A pending pass alone does not keep the process alive.
    this.timer.unref();
  }

  /** Runs `work` holding the retention lock, or answers "skipped". */
  private async locked(work: () => Promise<PassResult>): Promise<PassResult> {
    const { knex } = this.options;
    if (runningOn.has(knex)) return { outcome: "skipped" };
    runningOn.add(knex);
    try {
      const config = (knex.client as { config: Knex.Config }).config;
      // PGlite: the in-process lock above is all there is (one process per data directory).
      if (config.client !== "pg") return await work();
      // A session of its own, outside the pool: the pass's statements take
      // pooled connections as usual, and a small pool is not held up by the lock.
      // DATABASE_DIRECT_URL when set: a session-level lock needs a session, which a transaction-mode pooler does not keep.
      const session = new pg.Client(sessionConnectionConfig(knex));
      session.on("error", () => {}); // a broken session ends the lock; the pass's own statements report errors
      await session.connect();
      try {
        const { rows } = await session.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1::bigint) AS locked", [RETENTION_LOCK_KEY]);
        if (rows[0]?.locked !== true) return { outcome: "skipped" };
        return await work();
      } finally {
        // Ending the session releases the lock.
        await session.end().catch(() => {});
      }
    } finally {
      runningOn.delete(knex);
    }
  }

  private async pass(): Promise<PassResult> {
    const { knex, logger, metrics, defaults, batchSize } = this.options;
    const start = performance.now();
    const someDefault = POLICY_FIELDS.some(([key]) => defaults[key] !== 0);
    const { tenants, policies } = await retentionTenants(knex, 60_000, { withRows: someDefault });
    const saved = new Map(policies.map((p) => [p.tenant_id, policyFromJson(p.policy)]));
    const deleted = noCounts();
    // Whole months of routing decisions first (src/retention/partitions.ts);
    // on failure (a lock_timeout behind long calls) the rows are deleted one
    // by one below, and the next pass tries again.
    try {
      const months = await maintainDecisionPartitions(knex, defaults, saved.values());
      deleted.routingDecisions += months.rows;
      if (months.rows > 0) metrics?.retentionDeleted.inc({ resource: "routing_decision", status: "" }, months.rows);
      if (months.created.length > 0 || months.dropped.length > 0) logger.info("routing decision partitions", { created: months.created, dropped: months.dropped, rows: months.rows });
    } catch (err) {
      logger.warn("routing decision partitions not maintained in this pass", { error: err });
    }
    let visited = 0;
    for (const tenant of tenants) {
      if (this.stopped) return { outcome: "stopped", tenants: visited, deleted };
      const policy = effectiveRetention(saved.get(tenant), defaults);
      if (POLICY_FIELDS.every(([key]) => policy[key] === 0)) continue;
      visited++;
      const outcome = await applyRetention(new TenantScope(tenant, knex), policy, {
        dryRun: false,
        batchSize,
        stopped: () => this.stopped,
        onDeleted: (resource, status, rows) => metrics?.retentionDeleted.inc({ resource, status }, rows),
      });
      for (const key of Object.keys(deleted) as (keyof RetentionCounts)[]) deleted[key] += outcome.counts[key];
      if (!outcome.finished) return { outcome: "stopped", tenants: visited, deleted };
    }
    metrics?.retentionLastCompleted.setToCurrentTime();
    const total = Object.values(deleted).reduce((a, b) => a + b, 0);
    const fields = { tenants: visited, deleted, durationMs: Math.round(performance.now() - start) };
    if (total > 0) logger.info("retention pass completed", fields);
    else logger.debug("retention pass completed", fields);
    return { outcome: "completed", tenants: visited, deleted };
  }
}
