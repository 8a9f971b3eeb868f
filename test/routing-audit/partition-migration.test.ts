import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { describe, expect, it } from "vitest";
import { migrate } from "../../src/db/database.js";
import { MONTHS_BACK } from "../../src/db/queries/decision-partitions.js";
import { rowsVisibleTo, scratchBeforeMigration } from "../support/backend.js";

// Migration 20261204080000_partition_routing_decisions converts an existing
// routing_decisions into a table partitioned by month without losing a row or
// a column (the generated stored_bytes included), and keeps row-level
// security; its down migration converts back. It runs on a database of its
// own, migrated step by step up to it.

const MIGRATION = "20261204080000_partition_routing_decisions";
const DAY = 86_400_000;
let knex: Knex;
scratchBeforeMigration("partition_migration", MIGRATION, (db) => (knex = db));

const tenants = [randomUUID(), randomUUID()].sort();

/** Every row, every column, in a stable order. */
async function allRows(): Promise<Record<string, unknown>[]> {
  const { rows } = await knex.raw<{ rows: Record<string, unknown>[] }>("SELECT * FROM routing_decisions ORDER BY tenant_id, decision_id");
  return rows;
}

describe(`migration ${MIGRATION}`, () => {
  it("keeps every row and column, puts recent months in their partitions and older rows in the default one, and keeps tenants apart", async () => {
    const now = Date.now();
    // 40 decisions per tenant, one every 25 days: more than MONTHS_BACK months back.
    for (const tenant of tenants) {
      for (let i = 0; i < 40; i++) {
        await knex.raw(
          `INSERT INTO routing_decisions (tenant_id, decision_id, task_id, task_type, required_capability, selected_agent, priority,
             agent_score, candidates, success, error_message, retry_attempts, routing_duration_us, task_duration_us, routed_at,
             workflow_execution_id, step_id, content_hash)
           VALUES (?, ?, ?, 'summarize', 'llm', ?, ?, 0.75, ?::jsonb, ?, ?, 2, ?, ?, ?, 'wf-1', 'step-1', ?)`,
          [tenant, randomUUID(), `task-${i}`, `agent-${i % 3}`, i, JSON.stringify([{ agent_key: "agent-0", score: 0.5 }]), i % 2 === 0,
            i % 2 === 0 ? "" : "boom ✗", 1000 + i, 2000 + i, new Date(now - i * 25 * DAY - 3_600_000).toISOString(), `hash-${i}`],
        );
      }
    }
    const before = await allRows();
    expect(before).toHaveLength(80);
    expect(before.every((r) => Number(r.stored_bytes) > 64)).toBe(true);

    await migrate(knex);

    expect(await allRows()).toEqual(before);
    const { rows: placed } = await knex.raw<{ rows: { partition: string; routed_at: string }[] }>(
      "SELECT tableoid::regclass::text AS partition, routed_at FROM routing_decisions",
    );
    const current = new Date(now);
    const firstMonthKept = Date.UTC(current.getUTCFullYear(), current.getUTCMonth() - MONTHS_BACK, 1);
    for (const { partition, routed_at } of placed) {
      const at = new Date(routed_at);
      const month = `routing_decisions_y${at.getUTCFullYear()}m${String(at.getUTCMonth() + 1).padStart(2, "0")}`;
      expect(partition).toBe(at.getTime() >= firstMonthKept ? month : "routing_decisions_default");
    }
    expect(placed.some((p) => p.partition === "routing_decisions_default")).toBe(true);
    for (const tenant of tenants) expect(await rowsVisibleTo(knex, "routing_decisions", tenant)).toBe(40);
    expect(await rowsVisibleTo(knex, "routing_decisions", randomUUID())).toBe(0);
    // The partitions are reached only through the parent (its policies): no grant of their own.
    await expect(
      knex.transaction(async (trx) => {
        await trx.raw("SELECT set_config('role', 'orchestrator_tenant', true)");
        await trx.raw("SELECT count(*) FROM routing_decisions_default");
      }),
    ).rejects.toThrow(/permission denied/);

    // Undo this migration, whatever was listed after it.
    await knex.migrate.down({ name: "20261204080000_partition_routing_decisions" });
    expect(await allRows()).toEqual(before);
    const { rows: kind } = await knex.raw<{ rows: { relkind: string }[] }>("SELECT relkind FROM pg_class WHERE oid = 'routing_decisions'::regclass");
    expect(kind[0]!.relkind).toBe("r");
    for (const tenant of tenants) expect(await rowsVisibleTo(knex, "routing_decisions", tenant)).toBe(40);
    await migrate(knex);
    expect(await allRows()).toEqual(before);
  });
});
