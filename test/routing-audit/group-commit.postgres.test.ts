import { Code } from "@connectrpc/connect";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { connectClient } from "../support/clients.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { codeOf, decision, RECORD, value, watchInserts } from "./support/group-commit.js";

// Group commit on PostgreSQL, where concurrent calls really overlap in the
// database (see group-commit.test.ts for both backends).

describe("group commit of RecordRoutingDecision on PostgreSQL, a server with its usual pool", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t.close();
  });

  it("concurrent calls share INSERTs by themselves (a PGlite transaction usually ends before the next call arrives)", async () => {
    const tenant = newTenant();
    const client = connectClient(RoutingAuditService, t.baseUrl, tenant);
    const watch = watchInserts(t.knex, tenant);
    const sent = Array.from({ length: 64 }, (_, i) => decision({ taskId: `task-${i}` }));
    try {
      await Promise.all(sent.map((d) => client.recordRoutingDecision({ decision: d })));
    } finally {
      watch.stop();
    }
    expect(watch.inserts.flat().sort()).toEqual(sent.map((d) => d.decisionId).sort());
    expect(watch.inserts.length).toBeLessThan(sent.length / 2);
  });
});

describe("group commit of RecordRoutingDecision on PostgreSQL, a batch under its latest deadline", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t.close();
  });

  /**
   * An open transaction (added to `holders`) recording decision `id` of
   * `tenant` and not yet committed: it holds the id's row in
   * routing_decision_ids, on which a recording of the same id waits
   * (src/db/queries/routing-decisions.ts, insertNew).
   */
  async function lockDecision(tenant: string, id: string, holders: Knex.Transaction[]): Promise<Knex.Transaction> {
    const trx = await t.knex.transaction();
    holders.push(trx);
    await trx.raw(`INSERT INTO routing_decision_ids (tenant_id, decision_id, routed_at) VALUES (?, ?, now())`, [tenant, id]);
    await trx.raw(
      `INSERT INTO routing_decisions (tenant_id, decision_id, task_id, selected_agent, success, routed_at, content_hash) VALUES (?, ?, 'holder', 'holder', true, now(), 'holder')`,
      [tenant, id],
    );
    return trx;
  }

  it("the early deadline of one member does not cancel the write of the others", async () => {
    const tenant = newTenant();
    const client = connectClient(RoutingAuditService, t.baseUrl, tenant);
    const [first, early, later] = ["first", "early", "later"].map((taskId) => decision({ taskId }));
    const holders: Knex.Transaction[] = [];
    const watch = watchInserts(t.knex, tenant);
    try {
      const firstHolder = await lockDecision(tenant, first!.decisionId, holders);
      const laterHolder = await lockDecision(tenant, later!.decisionId, holders);
      // `first` goes at once and waits on its id's row; `early` and `later` queue behind it.
      const firstCall = client.recordRoutingDecision({ decision: first! });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const calls = Promise.allSettled([
        client.recordRoutingDecision({ decision: early! }, { timeoutMs: 1_500 }),
        client.recordRoutingDecision({ decision: later! }, { timeoutMs: 30_000 }),
      ]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      // `first` commits; `early` and `later` go together, under `later`'s
      // deadline, and wait on `later`'s id row past `early`'s deadline.
      await firstHolder.rollback();
      await firstCall;
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      await laterHolder.rollback();
      const [e, l] = await calls;
      expect(value(l!).taskId).toBe("later");
      // The client of `early` gave up at its deadline; its decision went with the batch all the same.
      expect(codeOf(e!)).toBe(Code.DeadlineExceeded);
    } finally {
      watch.stop();
      for (const holder of holders) if (!holder.isCompleted()) await holder.rollback();
    }
    // One INSERT for `first`, one for the batch of two: none cancelled, none redone alone.
    expect(watch.inserts.map((ids) => ids.length)).toEqual([1, 2]);
    // The server answered all three OK, `early` after its deadline: the window
    // group-commit.ts documents (its client had stopped waiting).
    const answers = t.logs.filter((l) => l.msg === "rpc" && l.tenant === tenant && l.procedure === RECORD);
    expect(answers.map((a) => a.code)).toEqual(["OK", "OK", "OK"]);
    const rows = (await client.listRoutingDecisions({ pageSize: 100 })).decisions;
    expect(rows.map((r) => r.taskId).sort()).toEqual(["early", "first", "later"]);
  });
});
