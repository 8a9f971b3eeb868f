import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { connectClient } from "../support/clients.js";
import { at, decision } from "../support/decisions.js";
import { errorOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// routing_decisions is partitioned by routed_at, and its primary key must
// contain the partition key: (tenant_id, decision_id, routed_at). A
// decision_id must still be stored once per tenant, whatever routed_at a
// reuse of it carries (src/db/queries/routing-decisions.ts, insertNew).

const DAY = 86_400;
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

const audit = (tenant: string) => connectClient(RoutingAuditService, t.baseUrl, tenant);

/** Rows stored under the id, counted across every partition (the test's connection is not bound by row-level security). */
async function rowsOf(tenant: string, decisionId: string): Promise<number> {
  const { rows } = await t.knex.raw<{ rows: { n: string }[] }>(
    "SELECT count(*) AS n FROM routing_decisions WHERE tenant_id = ? AND decision_id = ?",
    [tenant, decisionId],
  );
  return Number(rows[0]!.n);
}

/** Rows of routing_decision_ids under the id (the table that keeps an id once per tenant). */
async function idRowsOf(tenant: string, decisionId: string): Promise<number> {
  const { rows } = await t.knex.raw<{ rows: { n: string }[] }>(
    "SELECT count(*) AS n FROM routing_decision_ids WHERE tenant_id = ? AND decision_id = ?",
    [tenant, decisionId],
  );
  return Number(rows[0]!.n);
}

describe("decision_id stays unique per tenant across the monthly partitions", () => {
  it("a retry is idempotent; the same id routed in another month answers ALREADY_EXISTS and stores nothing", async () => {
    const tenant = newTenant();
    const d = decision({ routedAt: at(0) });
    const first = await audit(tenant).recordRoutingDecision({ decision: d });
    expect((await audit(tenant).recordRoutingDecision({ decision: d })).decision).toEqual(first.decision);
    for (const days of [-40, -400, 45]) {
      const moved = { ...d, routedAt: at(days * DAY) };
      expect((await errorOf(audit(tenant).recordRoutingDecision({ decision: moved }))).code).toBe(Code.AlreadyExists);
      expect((await errorOf(audit(tenant).recordRoutingDecisions({ decisions: [decision(), moved] }))).code).toBe(Code.AlreadyExists);
    }
    expect(await rowsOf(tenant, d.decisionId)).toBe(1);
  });

  it("concurrent calls recording one id with routed_at in different months store it once", async () => {
    const tenant = newTenant();
    const id = decision().decisionId;
    const calls = Array.from({ length: 12 }, (_, i) => decision({ decisionId: id, routedAt: at(-i * 31 * DAY) }));
    const results = await Promise.allSettled([
      ...calls.slice(0, 6).map((d) => audit(tenant).recordRoutingDecision({ decision: d })),
      ...calls.slice(6).map((d) => audit(tenant).recordRoutingDecisions({ decisions: [d] })),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect((r.reason as { code: Code }).code).toBe(Code.AlreadyExists);
    expect(await rowsOf(tenant, id)).toBe(1);
    expect(await idRowsOf(tenant, id)).toBe(1);
  });

  it("DeleteRoutingDecisions deletes the ids with their decisions: the id may then be recorded again, with other content", async () => {
    const tenant = newTenant();
    const d = decision({ routedAt: at(-40 * DAY) });
    const kept = decision({ routedAt: at(0) });
    await audit(tenant).recordRoutingDecisions({ decisions: [d, kept] });
    expect((await audit(tenant).deleteRoutingDecisions({ routedBefore: at(-DAY) })).deletedCount).toBe(1n);
    expect([await idRowsOf(tenant, d.decisionId), await idRowsOf(tenant, kept.decisionId)]).toEqual([0, 1]);
    const again = await audit(tenant).recordRoutingDecision({ decision: { ...d, taskId: "again", routedAt: at(0) } });
    expect(again.decision).toMatchObject({ decisionId: d.decisionId, taskId: "again" });
    expect([await rowsOf(tenant, d.decisionId), await idRowsOf(tenant, d.decisionId)]).toEqual([1, 1]);
  });

  it("another tenant may use the same id", async () => {
    const [a, b] = [newTenant(), newTenant()];
    const d = decision();
    await audit(a).recordRoutingDecision({ decision: d });
    await audit(b).recordRoutingDecision({ decision: { ...d, routedAt: at(-90 * DAY) } });
    expect([await rowsOf(a, d.decisionId), await rowsOf(b, d.decisionId)]).toEqual([1, 1]);
  });
});
