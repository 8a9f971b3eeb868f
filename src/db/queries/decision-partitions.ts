import type { Knex } from "knex";

// The monthly partitions of routing_decisions (migration
// 20261204080000_partition_routing_decisions): maintenance statements, run by
// the server as the tables' owner (the login user that migrates), outside any
// tenant binding. They touch every tenant's rows of a month at once, and are
// listed in docs/scaling.md with the other maintenance tasks.
//
// - Partitions are whole UTC months, named routing_decisions_yYYYYmMM, from
//   the first instant of the month (inclusive) to the next month's.
// - routing_decisions_default takes every row no monthly partition covers, so
//   that an insert never fails for want of a partition (a server that did not
//   run maintenance for months, a routed_at decades away).
// - ensureDecisionPartitions creates the months ahead, and a partition for
//   every recent month that has rows in the default partition (moving them
//   there). Older months stay in the default partition (a tenant could
//   otherwise make thousands of partitions with far-away routed_at values);
//   row-by-row retention deletes them.
// - dropDecisionPartitionsBefore detaches and drops whole months.
//
// Both run in one transaction each, under a transaction-level advisory lock
// (so two replicas never create or drop the same partition at once, and it
// works through a transaction-mode pooler) and a lock_timeout (DDL on the
// audit must not queue the calls behind it for long: on a timeout the work is
// left to the next pass).

/** Months created ahead of the current one. */
export const MONTHS_AHEAD = 3;
/** How far back (months before the current one) rows in the default partition get a partition of their own. */
export const MONTHS_BACK = 24;

const TABLE = "routing_decisions";
const DEFAULT_PARTITION = "routing_decisions_default";
const NAME = /^routing_decisions_y(\d{4})m(\d{2})$/;
/** Key pair of the advisory lock (two int4 keys: a key space apart from the bigint locks). */
const LOCK = [1919250544, 1952543859] as const; // "rdpa", "rtns"
const LOCK_TIMEOUT = "5s";

// The columns a move copies (stored_bytes is generated: the target computes it).
const COLUMNS = `tenant_id, decision_id, task_id, task_type, required_capability, selected_agent, priority, agent_score,
  candidates, success, error_message, retry_attempts, routing_duration_us, routed_at, workflow_execution_id, step_id,
  create_time, task_duration_us, content_hash`;

/** A month as [year, month 1-12]. */
type Month = readonly [number, number];

const monthStart = ([y, m]: Month) => new Date(Date.UTC(y, m - 1, 1));
const addMonths = ([y, m]: Month, n: number): Month => {
  const i = y * 12 + (m - 1) + n;
  return [Math.floor(i / 12), (i % 12) + 1];
};
const monthOf = (d: Date): Month => [d.getUTCFullYear(), d.getUTCMonth() + 1];
const partitionName = ([y, m]: Month) => `${TABLE}_y${String(y).padStart(4, "0")}m${String(m).padStart(2, "0")}`;

/** One monthly partition: its name and range [from, to). */
export interface DecisionPartition {
  name: string;
  from: Date;
  to: Date;
}

/** The monthly partitions attached to routing_decisions, oldest first (the default partition is not listed). */
export async function listDecisionPartitions(db: Knex): Promise<DecisionPartition[]> {
  const { rows } = await db.raw<{ rows: { name: string }[] }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = to_regclass(?) ORDER BY c.relname`,
    [TABLE],
  );
  return rows.flatMap(({ name }) => {
    const m = NAME.exec(name);
    if (m === null) return [];
    const month: Month = [Number(m[1]), Number(m[2])];
    return [{ name, from: monthStart(month), to: monthStart(addMonths(month, 1)) }];
  });
}

async function lockMaintenance(trx: Knex.Transaction): Promise<void> {
  await trx.raw("SELECT pg_advisory_xact_lock(?::int4, ?::int4), set_config('lock_timeout', ?, true)", [...LOCK, LOCK_TIMEOUT]);
}

/**
 * Creates the monthly partitions missing from the current month (of `now`) to
 * MONTHS_AHEAD after it, and one for every month from MONTHS_BACK before it
 * that has rows in the default partition, moving those rows into it. Returns
 * the names created. (The migration names its old table as `rowsIn`: months
 * with rows there get their partition before the rows are copied.)
 */
export async function ensureDecisionPartitions(knex: Knex, now: Date = new Date(), rowsIn: string = DEFAULT_PARTITION): Promise<string[]> {
  return knex.transaction(async (trx) => {
    await lockMaintenance(trx);
    const current = monthOf(now);
    const back = monthStart(addMonths(current, -MONTHS_BACK));
    const end = monthStart(addMonths(current, MONTHS_AHEAD + 1));
    const existing = new Set((await listDecisionPartitions(trx)).map((p) => p.name));
    const { rows } = await trx.raw<{ rows: { month: string }[] }>(
      `SELECT DISTINCT to_char(routed_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month FROM ${rowsIn}
        WHERE routed_at >= ?::timestamptz AND routed_at < ?::timestamptz`,
      [back.toISOString(), end.toISOString()],
    );
    const wanted = new Map<string, Month>();
    for (const { month } of rows) {
      const [y, m] = month.split("-").map(Number) as [number, number];
      wanted.set(partitionName([y, m]), [y, m]);
    }
    for (let i = 0; i <= MONTHS_AHEAD; i++) {
      const month = addMonths(current, i);
      wanted.set(partitionName(month), month);
    }
    const created: string[] = [];
    for (const [name, month] of [...wanted].sort(([a], [b]) => a.localeCompare(b))) {
      if (existing.has(name)) continue;
      const from = monthStart(month).toISOString();
      const to = monthStart(addMonths(month, 1)).toISOString();
      // A table of the parent's shape, filled with the month's rows from the
      // default partition, then attached: attaching checks that the default
      // partition holds no row of the new range any more.
      await trx.raw(`CREATE TABLE ${name} (LIKE ${TABLE} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS)`);
      await trx.raw(
        `WITH moved AS (
           DELETE FROM ${DEFAULT_PARTITION} WHERE routed_at >= ?::timestamptz AND routed_at < ?::timestamptz RETURNING ${COLUMNS}
         ) INSERT INTO ${name} (${COLUMNS}) SELECT ${COLUMNS} FROM moved`,
        [from, to],
      );
      await trx.raw(`ALTER TABLE ${TABLE} ATTACH PARTITION ${name} FOR VALUES FROM ('${from}') TO ('${to}')`);
      created.push(name);
    }
    return created;
  });
}

/**
 * Detaches and drops the monthly partitions whose whole range is before
 * `cutoff`, and returns their names and how many rows they held.
 */
export async function dropDecisionPartitionsBefore(knex: Knex, cutoff: Date): Promise<{ dropped: string[]; rows: number }> {
  return knex.transaction(async (trx) => {
    await lockMaintenance(trx);
    const old = (await listDecisionPartitions(trx)).filter((p) => p.to.getTime() <= cutoff.getTime());
    let rows = 0;
    for (const p of old) {
      // Counted for the retention metrics (a scan of a month that is about to go).
      const { rows: counted } = await trx.raw<{ rows: { n: string }[] }>(`SELECT count(*) AS n FROM ${p.name}`);
      rows += Number(counted[0]!.n);
      await trx.raw(`ALTER TABLE ${TABLE} DETACH PARTITION ${p.name}`);
      await trx.raw(`DROP TABLE ${p.name}`);
    }
    return { dropped: old.map((p) => p.name), rows };
  });
}
