import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { describe, expect, it } from "vitest";
import { migrate } from "../../src/db/database.js";
import { rowsVisibleTo, scratchBeforeMigration } from "../support/backend.js";

// Migration 20261205300000_routing_decision_ids gives every stored decision
// its row in routing_decision_ids, the table that keeps a decision id once per
// tenant (src/db/queries/routing-decisions.ts): without it, an id recorded
// before the upgrade could be recorded again with other content after it. It
// runs on a database of its own, migrated step by step up to it.

const MIGRATION = "20261205300000_routing_decision_ids";
const DAY = 86_400_000;
let knex: Knex;
scratchBeforeMigration("decision_ids_migration", MIGRATION, (db) => (knex = db));

const tenants = [randomUUID(), randomUUID()].sort();

/** [tenant, decision id, routed_at] of every row of `table`, in a stable order. */
async function keys(table: string): Promise<string[][]> {
  const { rows } = await knex.raw<{ rows: { t: string; d: string; r: string }[] }>(
    `SELECT tenant_id AS t, decision_id AS d, routed_at::text AS r FROM ${table} ORDER BY 1, 2`,
  );
  return rows.map((row) => [row.t, row.d, row.r]);
}

describe(`migration ${MIGRATION}`, () => {
  it("copies the id of every stored decision, in every month and the default partition, and keeps tenants apart", async () => {
    const now = Date.now();
    // 30 decisions per tenant, one every 40 days: recent months and older ones (the default partition).
    for (const tenant of tenants) {
      for (let i = 0; i < 30; i++) {
        await knex.raw(
          `INSERT INTO routing_decisions (tenant_id, decision_id, task_id, selected_agent, success, routed_at, content_hash)
           VALUES (?, ?, ?, 'agent-1', true, ?, ?)`,
          [tenant, randomUUID(), `task-${i}`, new Date(now - i * 40 * DAY).toISOString(), `hash-${i}`],
        );
      }
    }
    const decisions = await keys("routing_decisions");
    expect(decisions).toHaveLength(60);

    await migrate(knex);

    expect(await keys("routing_decision_ids")).toEqual(decisions);
    for (const tenant of tenants) expect(await rowsVisibleTo(knex, "routing_decision_ids", tenant)).toBe(30);
    expect(await rowsVisibleTo(knex, "routing_decision_ids", randomUUID())).toBe(0);

    await knex.migrate.down({ name: MIGRATION });
    expect(await knex.schema.hasTable("routing_decision_ids")).toBe(false);
    expect(await keys("routing_decisions")).toEqual(decisions);
    await migrate(knex);
    expect(await keys("routing_decision_ids")).toEqual(decisions);
  });
});
