import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { describe, expect, it } from "vitest";
import { scratchBeforeMigration } from "../support/backend.js";

// Migration 20261205100000_json_columns_as_values repairs the executions that
// conditional saves stored before 2026-12-05: each JSON column as JSON text
// inside a JSON string. It runs on a database of its own, migrated step by
// step up to it, with rows written as the old code wrote them.

const MIGRATION = "20261205100000_json_columns_as_values";
let knex: Knex;
scratchBeforeMigration("json_columns_migration", MIGRATION, (db) => (knex = db));

const values = {
  definition: { name: "w", steps: [{ id: "a" }] },
  context: { customer: "c-1", amount: 12.5, tags: ["x"] },
  step_executions: [{ stepId: "a", status: "STEP_STATUS_COMPLETED" }],
  step_outputs: { a: { ok: true } },
  labels: { team: "billing" },
};
const COLUMNS = Object.keys(values) as (keyof typeof values)[];

/** Inserts an execution, its JSON columns as JSON values or (doubly) as JSON strings holding their text. */
async function insert(tenant: string, id: string, doubly: boolean): Promise<void> {
  const json = (v: unknown) => JSON.stringify(doubly ? JSON.stringify(v) : v);
  await knex.raw(
    `INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, definition, context, step_executions,
       step_outputs, labels, started_at)
     VALUES (?, ?, 'w', 'RUNNING', ?::jsonb, ?::jsonb, ?::jsonb, ?::jsonb, ?::jsonb, now())`,
    [tenant, id, ...COLUMNS.map((c) => json(values[c]))],
  );
}

async function stored(tenant: string, id: string): Promise<Record<string, unknown>> {
  const { rows } = await knex.raw<{ rows: Record<string, unknown>[] }>(
    `SELECT ${COLUMNS.map((c) => `${c}, jsonb_typeof(${c}) AS ${c}_type`).join(", ")}, version, stored_bytes
     FROM workflow_executions WHERE tenant_id = ? AND execution_id = ?`,
    [tenant, id],
  );
  return rows[0]!;
}

describe(`migration ${MIGRATION}`, () => {
  it("turns doubly encoded JSON columns of every tenant into the values they hold, keeps versions, and leaves good rows alone", async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    await insert(a, "doubly", true);
    await insert(b, "doubly", true);
    await insert(a, "good", false);
    const before = { a: await stored(a, "doubly"), b: await stored(b, "doubly"), good: await stored(a, "good") };
    expect(before.a.context_type).toBe("string");

    await knex.migrate.up();
    expect(((await knex.migrate.list()) as [unknown[], unknown[]])[1]).not.toContainEqual(expect.objectContaining({ file: MIGRATION }));

    for (const [tenant, key] of [[a, "a"], [b, "b"]] as const) {
      const row = await stored(tenant, "doubly");
      for (const c of COLUMNS) {
        expect(row[c], c).toEqual(values[c]);
        expect(row[`${c}_type`], c).toBe(Array.isArray(values[c]) ? "array" : "object");
      }
      // The etag (the version) a client holds stays valid; the stored size no longer counts the escapes.
      expect(row.version).toBe(before[key].version);
      expect(Number(row.stored_bytes)).toBeLessThan(Number(before[key].stored_bytes));
      expect(Number(row.stored_bytes)).toBe(Number(before.good.stored_bytes) - "good".length + "doubly".length);
    }
    expect(await stored(a, "good")).toEqual(before.good);
  });

  it("leaves row-level security forced on the table", async () => {
    const { rows } = await knex.raw<{ rows: { relforcerowsecurity: boolean }[] }>(
      "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'workflow_executions'",
    );
    expect(rows[0]!.relforcerowsecurity).toBe(true);
  });
});
