import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { describe, expect, it } from "vitest";
import { scratchBeforeMigration } from "../support/backend.js";

// Migration 20261205200000_execution_lease_table moves the leases of
// executions out of workflow_executions into execution_leases. It runs on a
// database of its own, migrated step by step up to it, with leases stored as
// claims stored them before (the three lease columns).

const MIGRATION = "20261205200000_execution_lease_table";
let knex: Knex;
scratchBeforeMigration("lease_table_migration", MIGRATION, (db) => (knex = db));

interface Lease {
  owner: string;
  token: string;
  expire_time: string;
}

/** An execution as the schema before the migration stored it, with a lease or none (superuser connection: no RLS). */
async function insertBefore(tenant: string, id: string, lease: { owner: string; token: string; expiresInS: number } | undefined): Promise<void> {
  await knex.raw(
    `INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, started_at, lease_owner, lease_token, lease_expire_time)
     VALUES (?, ?, 'w', 'RUNNING', now(), ?, ?::bigint, now() + ?::double precision * interval '1 second')`,
    [tenant, id, lease?.owner ?? null, lease?.token ?? null, lease === undefined ? null : lease.expiresInS],
  );
}

async function leasesOf(tenant: string): Promise<Record<string, Lease>> {
  const { rows } = await knex.raw<{ rows: (Lease & { execution_id: string })[] }>(
    "SELECT execution_id, owner, token, expire_time FROM execution_leases WHERE tenant_id = ? ORDER BY execution_id",
    [tenant],
  );
  return Object.fromEntries(rows.map(({ execution_id, ...lease }) => [execution_id, lease]));
}

async function leaseColumnsBefore(tenant: string): Promise<Record<string, Lease>> {
  const { rows } = await knex.raw<{ rows: (Lease & { execution_id: string })[] }>(
    `SELECT execution_id, lease_owner AS owner, lease_token AS token, lease_expire_time AS expire_time
     FROM workflow_executions WHERE tenant_id = ? AND lease_token IS NOT NULL ORDER BY execution_id`,
    [tenant],
  );
  return Object.fromEntries(rows.map(({ execution_id, ...lease }) => [execution_id, lease]));
}

const [a, b] = [randomUUID(), randomUUID()];

describe(`migration ${MIGRATION}`, () => {
  it("moves every tenant's leases, live and expired, to execution_leases and drops the lease columns", async () => {
    await insertBefore(a, "live", { owner: "replica-a", token: "1000000000007", expiresInS: 600 });
    await insertBefore(a, "expired", { owner: "replica-b", token: "1000000000009", expiresInS: -600 });
    await insertBefore(a, "free", undefined);
    await insertBefore(b, "live", { owner: "replica-c", token: "1000000000011", expiresInS: 600 });
    const before = { a: await leaseColumnsBefore(a), b: await leaseColumnsBefore(b) };
    expect(Object.keys(before.a)).toEqual(["expired", "live"]);

    await knex.migrate.up();
    expect(((await knex.migrate.list()) as [unknown[], unknown[]])[1]).not.toContainEqual(expect.objectContaining({ file: MIGRATION }));

    expect(await leasesOf(a)).toEqual(before.a);
    expect(await leasesOf(b)).toEqual(before.b);
    const { rows: columns } = await knex.raw<{ rows: { column_name: string }[] }>(
      "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'workflow_executions' AND column_name LIKE 'lease%'",
    );
    expect(columns).toEqual([]);
  });

  it("leaves row-level security forced on both tables", async () => {
    const { rows } = await knex.raw<{ rows: { relname: string; relforcerowsecurity: boolean }[] }>(
      "SELECT relname, relforcerowsecurity FROM pg_class WHERE relname IN ('workflow_executions', 'execution_leases') ORDER BY relname",
    );
    expect(rows).toEqual([
      { relname: "execution_leases", relforcerowsecurity: true },
      { relname: "workflow_executions", relforcerowsecurity: true },
    ]);
  });

  it("ends a lease with its execution: an execution deleted and recreated under the same id has none", async () => {
    expect(Object.keys(await leasesOf(b))).toEqual(["live"]);
    await knex("workflow_executions").where({ tenant_id: b, execution_id: "live" }).delete();
    expect(await leasesOf(b)).toEqual({});
    await knex.raw("INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, started_at) VALUES (?, 'live', 'w', 'RUNNING', now())", [b]);
    expect(await leasesOf(b)).toEqual({});
  });

  it("moves the leases back into the execution rows when rolled back", async () => {
    const moved = await leasesOf(a);
    await knex.migrate.down();
    expect(await leaseColumnsBefore(a)).toEqual(moved);
    const { rows } = await knex.raw<{ rows: { n: string }[] }>("SELECT count(*) AS n FROM pg_class WHERE relname = 'execution_leases'");
    expect(Number(rows[0]!.n)).toBe(0);
    await knex.migrate.up();
    expect(await leasesOf(a)).toEqual(moved);
  });
});
