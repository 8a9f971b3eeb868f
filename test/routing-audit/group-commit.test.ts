import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RoutingAuditService, type RoutingDecision } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { decisionToColumns } from "../../src/services/routing-audit/decision-row.js";
import { GroupCommit } from "../../src/services/routing-audit/group-commit.js";
import { TenantScope } from "../../src/tenancy/tenant-scope.js";
import { backendName, createSingleConnectionDatabase } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { clientFields } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { codeOf, decision, RECORD, type Settled, value, watchInserts } from "./support/group-commit.js";

// Group commit of RecordRoutingDecision (src/services/routing-audit/group-commit.ts):
// concurrent calls of a tenant are stored by shared INSERTs, and each still
// gets exactly the answer it would get alone.

/**
 * Sends 64 calls of one tenant at once, with `updateStatistics`: 52 new
 * decisions, 6 concurrent retries of one new decision, 2 retries of a decision
 * stored before, 1 reuse of that one's id with other content, 2 new calls
 * sharing an id with different content, 1 invalid; checks that each gets its
 * own right answer, that the tenant stores exactly the acknowledged decisions,
 * once each and as answered, and that each is counted once in the statistics.
 * `burst` sends the calls (all at once) and settles them.
 */
async function mixedBurst(
  t: TestServer,
  burst: (send: () => Promise<Settled[]>) => Promise<Settled[]> = (send) => send(),
  updateStatistics = true,
): Promise<void> {
  const tenant = newTenant();
  const client = connectClient(RoutingAuditService, t.baseUrl, tenant);
  const earlier = decision({ taskId: "stored-earlier", selectedAgent: "agent-b", success: false });
  const original = (await client.recordRoutingDecision({ decision: earlier, updateStatistics })).decision!;

  const retried = decision({ taskId: "retried", selectedAgent: "agent-a" });
  const contested = decision({ taskId: "contested-1" });
  type Kind = "fresh" | "retry" | "retry-earlier" | "reused-id" | "contested" | "invalid";
  const calls: { kind: Kind; d: RoutingDecision }[] = [
    ...Array.from({ length: 52 }, (_, i) => ({
      kind: "fresh" as const,
      d: decision({ taskId: `fresh-${i}`, selectedAgent: i % 2 ? "agent-a" : "agent-b", success: i % 3 !== 0, decisionId: i % 10 === 0 ? "" : randomUUID() }),
    })),
    ...Array.from({ length: 6 }, (_, i) => ({ kind: "retry" as const, d: { ...retried, decisionId: i === 3 ? retried.decisionId.toUpperCase() : retried.decisionId } })),
    { kind: "retry-earlier", d: earlier },
    { kind: "retry-earlier", d: earlier },
    { kind: "reused-id", d: { ...earlier, success: true } },
    { kind: "contested", d: contested },
    { kind: "contested", d: { ...contested, taskId: "contested-2" } },
    { kind: "invalid", d: decision({ selectedAgent: "" }) },
  ];
  expect(calls).toHaveLength(64);
  // Sent in an order that spreads the duplicates over the whole burst.
  const order = calls.map((_, i) => (i * 37) % calls.length);
  const sent = await burst(async () => {
    const settled = await Promise.allSettled(order.map((i) => client.recordRoutingDecision({ decision: calls[i]!.d, updateStatistics })));
    const results: Settled[] = new Array(calls.length);
    order.forEach((i, k) => (results[i] = settled[k]!));
    return results;
  });

  const acknowledged = new Map<string, RoutingDecision>();
  const acknowledge = (d: RoutingDecision) => {
    const seen = acknowledged.get(d.decisionId);
    if (seen !== undefined) expect(d).toEqual(seen); // the same stored decision, create_time included
    acknowledged.set(d.decisionId, d);
  };
  const contestedCodes: (Code | "ok")[] = [];
  calls.forEach(({ kind, d }, i) => {
    const r = sent[i]!;
    switch (kind) {
      case "fresh": {
        const got = value(r);
        expect(clientFields(got)).toEqual(clientFields({ ...d, decisionId: d.decisionId === "" ? got.decisionId : d.decisionId }));
        acknowledge(got);
        break;
      }
      case "retry":
        expect(clientFields(value(r))).toEqual(clientFields(retried));
        acknowledge(value(r));
        break;
      case "retry-earlier":
        expect(value(r)).toEqual(original);
        break;
      case "reused-id":
        expect(codeOf(r)).toBe(Code.AlreadyExists);
        expect(ConnectError.from((r as PromiseRejectedResult).reason).rawMessage).toContain(`decision.decision_id "${earlier.decisionId}"`);
        break;
      case "contested":
        contestedCodes.push(codeOf(r));
        if (r.status === "fulfilled") {
          expect(clientFields(value(r))).toEqual(clientFields(d));
          acknowledge(value(r));
        }
        break;
      case "invalid":
        expect(codeOf(r)).toBe(Code.InvalidArgument);
        expect(ConnectError.from((r as PromiseRejectedResult).reason).rawMessage).toContain("decision.selected_agent");
        break;
    }
  });
  // Of two new calls sharing an id with different content, one is stored; the other reused its id.
  expect(contestedCodes.sort()).toEqual([Code.AlreadyExists, "ok"].sort());

  // Stored: exactly the acknowledged decisions (52 new, the retried one, one
  // contested) and the earlier one, each once, as answered.
  acknowledged.set(original.decisionId, original);
  expect(acknowledged.size).toBe(52 + 1 + 1 + 1);
  const rows = (await client.listRoutingDecisions({ pageSize: 1000 })).decisions;
  expect(rows).toHaveLength(acknowledged.size);
  for (const row of rows) expect(row).toEqual(acknowledged.get(row.decisionId));

  // Each stored decision counted once in its agent's statistics (none without updateStatistics).
  const stats = connectClient(StatisticsService, t.baseUrl, tenant);
  if (!updateStatistics) {
    expect((await stats.listAgentStatistics({})).statistics).toEqual([]);
    return;
  }
  for (const agentKey of ["agent-a", "agent-b"]) {
    const mine = rows.filter((r) => r.selectedAgent === agentKey);
    const s = (await stats.getAgentStatistics({ agentKey })).statistics!;
    expect(s.totalTasks).toBe(BigInt(mine.length));
    expect(s.successfulTasks).toBe(BigInt(mine.filter((r) => r.success).length));
    expect(s.failedTasks).toBe(BigInt(mine.filter((r) => !r.success).length));
  }
}

describe(`group commit of RecordRoutingDecision on ${backendName}, calls queued behind a busy connection`, () => {
  // One connection (PGlite only ever has one): a test holds it so that the
  // calls it sends queue up behind the first, whose batch waits for it, and
  // releases it once they have arrived. (Without that, PGlite, in process,
  // often finishes a call before the next one arrives: no queue forms.)
  let t: TestServer;
  let knex: Knex;
  beforeAll(async () => {
    knex = await createSingleConnectionDatabase();
    t = await startTestServer({}, knex);
  });
  afterAll(async () => {
    await t.close();
    await knex.destroy();
  });
  const audit = (tenant: string) => connectClient(RoutingAuditService, t.baseUrl, tenant);

  /** Starts `send` while the only connection is held, and releases it once the calls had time to arrive. */
  async function whileBusy<T>(send: () => Promise<T>): Promise<T> {
    const holder = await knex.transaction();
    let calls: Promise<T>;
    try {
      calls = send();
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      await holder.rollback();
    }
    return calls;
  }

  it("64 calls of one tenant queued together each get their own answer; every acknowledged decision is stored once and counted once", async () => {
    await mixedBurst(t, whileBusy);
  });

  it("the same without statistics (each batch one statement): each call gets its own answer, every acknowledged decision is stored once", async () => {
    await mixedBurst(t, whileBusy, false);
  });

  it("64 queued calls share INSERTs: a few statements, each decision in exactly one", async () => {
    const tenant = newTenant();
    const client = audit(tenant);
    const watch = watchInserts(knex, tenant);
    const sent = Array.from({ length: 64 }, (_, i) => decision({ taskId: `task-${i}` }));
    try {
      const answers = await whileBusy(() => Promise.all(sent.map((d) => client.recordRoutingDecision({ decision: d }))));
      answers.forEach((a, i) => expect(clientFields(a.decision!)).toEqual(clientFields(sent[i]!)));
    } finally {
      watch.stop();
    }
    expect(watch.inserts.flat().sort()).toEqual(sent.map((d) => d.decisionId).sort());
    // The first call's batch, waiting for the connection, takes the calls
    // queued by then when it gets it; stragglers (a loaded machine) go in a
    // few more batches.
    expect(watch.inserts.length).toBeLessThanOrEqual(8);
    expect((await client.listRoutingDecisions({ pageSize: 1000 })).decisions).toHaveLength(64);
  });

  it("calls of two tenants queued together are never mixed: each INSERT is one tenant's, each tenant sees only its own", async () => {
    const tenants = [newTenant(), newTenant()];
    const clients = tenants.map(audit);
    const watches = tenants.map((tenant) => watchInserts(knex, tenant));
    const sent = tenants.map((_, k) => Array.from({ length: 32 }, (_, i) => decision({ taskId: `tenant-${k}-task-${i}` })));
    try {
      // Interleaved: one call of each tenant after the other.
      const answers = await whileBusy(() =>
        Promise.all(Array.from({ length: 32 }, (_, i) => clients.map((client, k) => client.recordRoutingDecision({ decision: sent[k]![i]! }))).flat()),
      );
      answers.forEach((a, j) => expect(clientFields(a.decision!)).toEqual(clientFields(sent[j % 2]![Math.floor(j / 2)]!)));
    } finally {
      for (const w of watches) w.stop();
    }
    for (const [k, tenant] of tenants.entries()) {
      const mine = sent[k]!.map((d) => d.decisionId).sort();
      // The INSERTs bound to this tenant carry exactly its decisions, in shared batches.
      expect(watches[k]!.inserts.flat().sort()).toEqual(mine);
      expect(watches[k]!.inserts.length).toBeLessThanOrEqual(8);
      const rows = (await audit(tenant).listRoutingDecisions({ pageSize: 1000 })).decisions;
      expect(rows.map((r) => r.decisionId).sort()).toEqual(mine);
    }
  });

  it("a batch that fails because of one call is written again call by call: only that call fails", async () => {
    // Straight through GroupCommit, with a row the service's validation would
    // refuse (retry_attempts < 0), so that the database's CHECK fails the batch.
    const tenant = newTenant();
    const scope = new TenantScope(tenant, knex);
    const groupCommit = new GroupCommit();
    const watch = watchInserts(knex, tenant);
    const good = Array.from({ length: 9 }, (_, i) => decisionToColumns(decision({ taskId: `good-${i}` })));
    const bad = { ...decisionToColumns(decision({ taskId: "bad" })), retry_attempts: -1 };
    try {
      const results = await whileBusy(() => Promise.allSettled([...good.slice(0, 4), bad, ...good.slice(4)].map((c) => groupCommit.record(scope, c, true))));
      expect(results.map((r) => r.status)).toEqual([...Array(4).fill("fulfilled"), "rejected", ...Array(5).fill("fulfilled")]);
      expect((results[4] as PromiseRejectedResult).reason).toMatchObject({ code: "23514" }); // check_violation
      const rows = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      expect(rows.map((r) => r.decision_id)).toEqual(good.map((c) => c.decision_id));
    } finally {
      watch.stop();
    }
    // One batch of all ten failed, then each went alone.
    expect(watch.inserts.map((ids) => ids.length)).toEqual([10, ...Array(10).fill(1)]);
    const rows = (await audit(tenant).listRoutingDecisions({ pageSize: 100 })).decisions;
    expect(rows.map((r) => r.decisionId).sort()).toEqual(good.map((c) => c.decision_id).sort());
    const stats = connectClient(StatisticsService, t.baseUrl, tenant);
    expect((await stats.getAgentStatistics({ agentKey: "agent-a" })).statistics!.totalTasks).toBe(9n);
  });

  /** The server's own answers (log lines) to the tenant's RecordRoutingDecision calls, once there are `n`. */
  async function serverAnswers(tenant: string, n: number): Promise<Record<string, unknown>[]> {
    const end = Date.now() + 5_000;
    for (;;) {
      const lines = t.logs.filter((l) => l.msg === "rpc" && l.tenant === tenant && l.procedure === RECORD);
      if (lines.length >= n || Date.now() > end) return lines;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it("a queued call whose deadline passes answers DEADLINE_EXCEEDED, a cancelled one CANCELED, at once, and neither is written", async () => {
    const tenant = newTenant();
    const client = audit(tenant);
    const [leader, patient, late, cancelled, inTime] = ["leader", "patient", "late", "cancelled", "in-time"].map((taskId) => decision({ taskId }));
    const holder = await knex.transaction();
    let released = false;
    try {
      // The leader's batch waits for the connection; the others queue behind it.
      const leading = client.recordRoutingDecision({ decision: leader! });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const abort = new AbortController();
      const calls = Promise.allSettled([
        client.recordRoutingDecision({ decision: patient! }),
        client.recordRoutingDecision({ decision: late! }, { timeoutMs: 300 }),
        client.recordRoutingDecision({ decision: cancelled! }, { signal: abort.signal }),
        client.recordRoutingDecision({ decision: inTime! }, { timeoutMs: 30_000 }),
      ]);
      setTimeout(() => abort.abort(), 100);
      // The server answers the two that gave up while the connection is still held.
      const answers = await serverAnswers(tenant, 2);
      expect(answers.map((a) => a.code).sort()).toEqual(["CANCELED", "DEADLINE_EXCEEDED"]);
      await holder.rollback();
      released = true;
      const [p, l, c, i] = await calls;
      expect((await leading).decision!.taskId).toBe("leader");
      expect(value(p!).taskId).toBe("patient");
      expect(codeOf(l!)).toBe(Code.DeadlineExceeded);
      expect(codeOf(c!)).toBe(Code.Canceled);
      expect(value(i!).taskId).toBe("in-time");
    } finally {
      if (!released) await holder.rollback();
    }
    const rows = (await client.listRoutingDecisions({ pageSize: 100 })).decisions;
    expect(rows.map((r) => r.taskId).sort()).toEqual(["in-time", "leader", "patient"]);
  });
});

describe(`group commit of RecordRoutingDecision on ${backendName}, a server with its usual pool`, () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t.close();
  });

  it("64 concurrent calls of one tenant each get their own answer; every acknowledged decision is stored once and counted once", async () => {
    await mixedBurst(t);
  });

  it("the same without statistics: each call gets its own answer, every acknowledged decision is stored once", async () => {
    await mixedBurst(t, undefined, false);
  });
});

