import type { Knex } from "knex";
import { Gauge } from "prom-client";
import type { DatabaseAvailability } from "../db/availability.js";
import { timestampPartsFromDb } from "../db/convert.js";
import { type DomainCounts, domainCounts } from "../db/queries/maintenance.js";
import type { Logger } from "../logging/logger.js";
import type { Metrics } from "./metrics.js";

// Gauges read when Prometheus scrapes: the connection pool, whether the
// database answers, and the domain aggregates (breakers per state, incomplete
// executions per status). The aggregates come from the database across
// tenants, so every replica reports the same values: aggregate them across
// replicas with max(), not sum().

/** What the database gauges read. */
export interface DatabaseMetricsDeps {
  knex: Knex;
  logger: Logger;
  /** Whether the database is reachable (main.ts); without it, the database counts as up. */
  database?: DatabaseAvailability;
  /** Longest time a scrape waits for the aggregates (ms); default 2,000. */
  queryTimeoutMs?: number;
  /** Aggregates younger than this are reused (ms): several scrapers cost one query; default 5,000. */
  cacheMs?: number;
}

/** The part of Knex's pool (tarn) the gauges read. */
interface Pool {
  max: number;
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
}

const STATES = ["CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"];
const INCOMPLETE = ["PENDING", "RUNNING", "BLOCKED"];

/** Registers the database gauges on `metrics`' registry. */
export function registerDatabaseMetrics(metrics: Metrics, deps: DatabaseMetricsDeps): void {
  const registers = [metrics.registry];
  const pool = () => (deps.knex.client as { pool?: Pool }).pool;
  new Gauge({
    name: "orchestrator_state_db_pool_connections",
    help: "Connections of the database pool, by state: in_use (lent to a query or transaction) or idle. PGlite has one connection.",
    labelNames: ["state"] as const,
    registers,
    collect() {
      const p = pool();
      this.set({ state: "in_use" }, p?.numUsed() ?? 0);
      this.set({ state: "idle" }, p?.numFree() ?? 0);
    },
  });
  new Gauge({
    name: "orchestrator_state_db_pool_pending_acquires",
    help: "Queries and transactions waiting for a connection of the database pool.",
    registers,
    collect() {
      this.set(pool()?.numPendingAcquires() ?? 0);
    },
  });
  new Gauge({
    name: "orchestrator_state_db_pool_max_connections",
    help: "Size limit of the database pool (DATABASE_POOL_MAX; 1 for PGlite).",
    registers,
    collect() {
      this.set(pool()?.max ?? 0);
    },
  });
  const up = () => deps.database?.isAvailable ?? true;
  new Gauge({
    name: "orchestrator_state_database_up",
    help: "1 when the database is migrated and answered the last probe, 0 when it is unreachable (health is then NOT_SERVING).",
    registers,
    collect() {
      this.set(up() ? 1 : 0);
    },
  });

  // The aggregates: one query per cacheMs at most, shared by concurrent scrapes.
  const cacheMs = deps.cacheMs ?? 5_000;
  let cached: { at: number; counts: DomainCounts | undefined } | undefined;
  let pending: Promise<DomainCounts | undefined> | undefined;
  const read = async (): Promise<DomainCounts | undefined> => {
    if (cached !== undefined && performance.now() - cached.at < cacheMs) return cached.counts;
    if (!up()) return undefined;
    pending ??= domainCounts(deps.knex, deps.queryTimeoutMs ?? 2_000)
      .catch((err: unknown) => {
        deps.logger.warn("metrics: could not read the domain aggregates; their gauges are left out of this scrape", { error: err });
        return undefined;
      })
      .then((counts) => {
        cached = { at: performance.now(), counts };
        pending = undefined;
        return counts;
      });
    return pending;
  };
  /** A gauge with one series per value of `label`, each read from the cached aggregates (none when they could not be read). */
  const countsGauge = <L extends string>(name: string, help: string, label: L, values: readonly string[], count: (c: DomainCounts, value: string) => number) =>
    new Gauge({
      name,
      help,
      labelNames: [label] as const,
      registers,
      async collect() {
        const counts = await read();
        this.reset();
        if (counts === undefined) return;
        for (const value of values) this.set({ [label]: value } as Record<L, string>, count(counts, value));
      },
    });
  countsGauge(
    "orchestrator_state_circuit_breakers",
    "Circuit breakers stored, across tenants, by state. Every replica reports the same value: aggregate with max().",
    "state", STATES, (c, state) => c.breakersByState.find((b) => b.state === state)?.count ?? 0,
  );
  countsGauge(
    "orchestrator_state_incomplete_executions",
    "Incomplete workflow executions (PENDING, RUNNING, BLOCKED), across tenants, by status. Every replica reports the same value: aggregate with max().",
    "status", INCOMPLETE, (c, status) => c.incompleteByStatus.find((e) => e.status === status)?.count ?? 0,
  );
  countsGauge(
    "orchestrator_state_leased_executions",
    "Incomplete workflow executions under a live lease (ClaimIncompleteWorkflows), across tenants, by status. Every replica reports the same value: aggregate with max().",
    "status", INCOMPLETE, (c, status) => c.incompleteByStatus.find((e) => e.status === status)?.leased ?? 0,
  );
  new Gauge({
    name: "orchestrator_state_incomplete_execution_oldest_start_timestamp_seconds",
    help: "started_at of the oldest incomplete execution of each status, across tenants (Unix time, seconds); absent when there is none.",
    labelNames: ["status"] as const,
    registers,
    async collect() {
      const counts = await read();
      this.reset();
      for (const e of counts?.incompleteByStatus ?? []) {
        const { seconds, nanos } = timestampPartsFromDb(e.oldest_started_at);
        this.set({ status: e.status }, seconds + nanos / 1e9);
      }
    },
  });
}
