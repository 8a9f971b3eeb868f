import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RetentionService } from "../../gen/orchestration/state/v1/retention_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { defaultConfig } from "../../src/config.js";
import { migrate } from "../../src/db/database.js";
import { ensureDecisionPartitions, listDecisionPartitions } from "../../src/db/queries/decision-partitions.js";
import { createScratchDatabase } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { decision } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Retention of routing decisions by whole monthly partitions
// (src/retention/partitions.ts): a background pass drops the months every
// policy in force lets go (the longest max age among the server default and
// the saved policies), and deletes the rest row by row per tenant. A pass
// looks at every tenant, so this file has a database of its own.

const DAY = 86_400_000;
let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let knex: Knex;
let t: TestServer;

beforeAll(async () => {
  scratch = await createScratchDatabase("retention_partitions");
  knex = scratch.knex;
  await migrate(knex);
  t = await startTestServer({ retentionDefaults: { ...defaultConfig.retentionDefaults, routingDecisionMaxAge: 60 * DAY / 1000 } }, knex);
});
afterAll(async () => {
  await t?.close();
  await scratch?.drop();
});

const audit = (tenant: string) => connectClient(RoutingAuditService, t.baseUrl, tenant);

/** Every decision id of the tenant with its age in days, youngest first. */
async function ages(tenant: string, now: number): Promise<number[]> {
  const { decisions } = await audit(tenant).listRoutingDecisions({ pageSize: 1000 });
  return decisions.map((d) => Math.round((now - Number(d.routedAt!.seconds) * 1000) / DAY * 2) / 2);
}

/** The tenant's ids in routing_decision_ids and its stored decisions' ids, each sorted (the test's connection is not bound by row-level security). */
async function idsAndDecisions(tenant: string): Promise<[string[], string[]]> {
  const ids = async (table: string) =>
    (await knex.raw<{ rows: { id: string }[] }>(`SELECT decision_id AS id FROM ${table} WHERE tenant_id = ? ORDER BY 1`, [tenant])).rows.map((r) => r.id);
  return [await ids("routing_decision_ids"), await ids("routing_decisions")];
}

describe("routing decisions kept by monthly partitions", () => {
  it("a pass drops the months every policy lets go, deletes the rest row by row, and leaves recent rows alone", async () => {
    const now = Date.now();
    // Half a day past whole days, so that no decision sits on a cutoff.
    const recorded = Array.from({ length: 18 }, (_, i) => i * 10 + 0.5); // 0.5 .. 170.5 days: six months and more
    const [plain, short, long] = [newTenant(), newTenant(), newTenant()];
    // plain follows the server default (60 days); short saved 30 days, long 90 days.
    await connectClient(RetentionService, t.baseUrl, short).saveRetentionPolicy({ policy: { routingDecisionMaxAge: { seconds: BigInt(30 * 86_400) } } });
    await connectClient(RetentionService, t.baseUrl, long).saveRetentionPolicy({ policy: { routingDecisionMaxAge: { seconds: BigInt(90 * 86_400) } } });
    const sent = new Map<string, ReturnType<typeof decision>[]>();
    for (const tenant of [plain, short, long]) {
      sent.set(tenant, recorded.map((age) => decision({ routedAt: timestampFromDate(new Date(now - age * DAY)) })));
      await audit(tenant).recordRoutingDecisions({ decisions: sent.get(tenant)! });
    }

    // Every recorded month has its partition (older months came from the default partition).
    await ensureDecisionPartitions(knex);
    const before = await listDecisionPartitions(knex);
    const oldest = new Date(now - 170.5 * DAY);
    expect(before[0]!.from.getTime()).toBe(Date.UTC(oldest.getUTCFullYear(), oldest.getUTCMonth(), 1));
    expect(before.length).toBeGreaterThanOrEqual(7 + 3);

    const pass = await t.server.retention.runOnce();

    // The longest policy (long's 90 days) decides which months may go.
    const cutoff = now - 90 * DAY;
    const after = await listDecisionPartitions(knex);
    const dropped = before.filter((p) => !after.some((a) => a.name === p.name));
    expect(dropped.length).toBeGreaterThanOrEqual(2);
    expect(dropped.every((p) => p.to.getTime() <= cutoff)).toBe(true);
    expect(after.every((p) => p.to.getTime() > cutoff)).toBe(true);
    // The rest went row by row: each tenant keeps exactly what its policy keeps.
    expect(await ages(plain, now)).toEqual(recorded.filter((a) => a <= 60));
    expect(await ages(short, now)).toEqual(recorded.filter((a) => a <= 30));
    expect(await ages(long, now)).toEqual(recorded.filter((a) => a <= 90));
    const kept = recorded.filter((a) => a <= 60).length + recorded.filter((a) => a <= 30).length + recorded.filter((a) => a <= 90).length;
    expect(pass).toMatchObject({ outcome: "completed", deleted: { routingDecisions: 3 * recorded.length - kept } });
    const { rows } = await knex.raw<{ rows: { n: string }[] }>("SELECT count(*) AS n FROM routing_decisions_default");
    expect(Number(rows[0]!.n)).toBe(0);
    // The ids of the decisions dropped with their months went too, in the same
    // pass: each tenant's ids are those of its stored decisions, and the id of
    // a dropped decision may be used again.
    for (const tenant of [plain, short, long]) {
      const [ids, stored] = await idsAndDecisions(tenant);
      expect(ids).toEqual(stored);
    }
    const gone = sent.get(long)!.at(-1)!;
    const again = await audit(long).recordRoutingDecision({ decision: { ...gone, taskId: "again", routedAt: timestampFromDate(new Date(now)) } });
    expect(again.decision).toMatchObject({ decisionId: gone.decisionId, taskId: "again" });

    // A one-day query reads that day's month only.
    const day = new Date(now - 5 * DAY);
    const from = new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate()));
    const to = new Date(from.getTime() + DAY);
    const plan = await knex.raw<{ rows: { "QUERY PLAN": string }[] }>(
      `EXPLAIN SELECT * FROM routing_decisions WHERE tenant_id = '${plain}'
         AND routed_at >= '${from.toISOString()}' AND routed_at < '${to.toISOString()}' ORDER BY routed_at DESC`,
    );
    const text = plan.rows.map((r) => r["QUERY PLAN"]).join("\n");
    const touched = new Set(text.match(/routing_decisions_(y\d{4}m\d{2}|default)/g));
    const month = `routing_decisions_y${from.getUTCFullYear()}m${String(from.getUTCMonth() + 1).padStart(2, "0")}`;
    expect([...touched]).toEqual([month]);
  });

  it("one policy that keeps decisions forever keeps every month", async () => {
    const keeper = newTenant();
    await connectClient(RetentionService, t.baseUrl, keeper).saveRetentionPolicy({ policy: { routingDecisionMaxAge: { seconds: 0n } } });
    const now = Date.now();
    await audit(keeper).recordRoutingDecision({ decision: decision({ routedAt: timestampFromDate(new Date(now - 200 * DAY)) }) });
    await ensureDecisionPartitions(knex);
    const before = (await listDecisionPartitions(knex)).map((p) => p.name);
    await t.server.retention.runOnce();
    expect((await listDecisionPartitions(knex)).map((p) => p.name)).toEqual(before);
    expect(await ages(keeper, now)).toEqual([200]);
  });
});
