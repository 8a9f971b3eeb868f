import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService, CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RetentionService } from "../../gen/orchestration/state/v1/retention_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { defaultConfig } from "../../src/config.js";
import { createMetrics } from "../../src/metrics/metrics.js";
import { applyRetention } from "../../src/retention/apply.js";
import { TenantScope } from "../../src/tenancy/tenant-scope.js";
import { backendName, createTestDatabase } from "../support/backend.js";
import { connectClient, workflowClient } from "../support/clients.js";
import { decision } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Scheduled retention: per-status max ages, legal hold, dry run, batches, the
// other kinds of records, and two replicas applying policies at once. Every
// test that saves a policy lives in this file, whose tests run one after the
// other: a background pass visits every tenant with a policy, and would touch
// other files' tenants otherwise.

const DAY = 86_400;
const dur = (seconds: number) => ({ seconds: BigInt(seconds), nanos: 0 });
const ago = (seconds: number) => ({ seconds: BigInt(Math.floor(Date.now() / 1000) - seconds), nanos: 0 });
const codeOf = (p: Promise<unknown>) => p.then(() => "OK", (err: unknown) => Code[ConnectError.from(err).code]);

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ retentionBatchSize: 3 });
});
afterAll(async () => {
  await t?.close();
});

const retention = (tenant: string) => connectClient(RetentionService, t.baseUrl, tenant);

/** Saves an execution; terminal ones completed `completedAgo` seconds ago. */
async function save(tenant: string, id: string, status: WorkflowStatus, completedAgo?: number, legalHold?: boolean) {
  const res = await workflowClient(t.baseUrl, tenant).saveWorkflowExecution({
    execution: {
      executionId: id,
      workflowName: "w",
      status,
      startedAt: ago((completedAgo ?? 0) + 3_600),
      completedAt: completedAgo === undefined ? undefined : ago(completedAgo),
      legalHold,
    },
  });
  return res.execution!;
}

/** The ids of the tenant's executions, sorted. */
async function ids(tenant: string): Promise<string[]> {
  const res = await workflowClient(t.baseUrl, tenant).listWorkflowExecutions({ pageSize: 1000 });
  return res.executions.map((e) => e.executionId).sort();
}

describe("RetentionService policies", () => {
  it("a tenant without a policy follows the server defaults (keep everything); a saved policy shows with its etag", async () => {
    const tenant = newTenant();
    const before = await retention(tenant).getRetentionPolicy({});
    expect(before.etag).toBe("");
    expect(before.updateTime).toBeUndefined();
    expect(before.policy?.completedExecutionMaxAge).toBeUndefined();
    expect(before.effectivePolicy?.completedExecutionMaxAge?.seconds).toBe(0n);
    expect(before.effectivePolicy?.circuitBreakerTransitionMaxAge?.seconds).toBe(0n);

    const saved = await retention(tenant).saveRetentionPolicy({ policy: { completedExecutionMaxAge: dur(90 * DAY) } });
    expect(saved.etag).not.toBe("");
    expect(saved.policy?.completedExecutionMaxAge?.seconds).toBe(BigInt(90 * DAY));
    expect(saved.policy?.failedExecutionMaxAge).toBeUndefined();
    expect(saved.effectivePolicy?.completedExecutionMaxAge?.seconds).toBe(BigInt(90 * DAY));
    expect(saved.effectivePolicy?.failedExecutionMaxAge?.seconds).toBe(0n);
    const read = await retention(tenant).getRetentionPolicy({});
    expect(read.etag).toBe(saved.etag);
    expect(read.policy).toEqual(saved.policy);
    // Another tenant does not see it.
    expect((await retention(newTenant()).getRetentionPolicy({})).etag).toBe("");
  });

  it("server defaults fill what a policy leaves unset", async () => {
    const server = await startTestServer({ retentionDefaults: { ...defaultConfig.retentionDefaults, routingDecisionMaxAge: 30 * DAY } }, t.knex);
    try {
      const tenant = newTenant();
      const client = connectClient(RetentionService, server.baseUrl, tenant);
      expect((await client.getRetentionPolicy({})).effectivePolicy?.routingDecisionMaxAge?.seconds).toBe(BigInt(30 * DAY));
      const saved = await client.saveRetentionPolicy({ policy: { routingDecisionMaxAge: dur(0) } });
      expect(saved.effectivePolicy?.routingDecisionMaxAge?.seconds).toBe(0n); // 0 overrides: keep forever
    } finally {
      await server.close();
    }
  });

  it("a save with a stale etag answers ABORTED and changes nothing; out-of-range max ages answer INVALID_ARGUMENT naming the field", async () => {
    const tenant = newTenant();
    expect(await codeOf(retention(tenant).saveRetentionPolicy({ etag: "1" }))).toBe("Aborted"); // none saved yet
    const first = await retention(tenant).saveRetentionPolicy({ policy: { failedExecutionMaxAge: dur(DAY) } });
    const second = await retention(tenant).saveRetentionPolicy({ policy: { failedExecutionMaxAge: dur(2 * DAY) }, etag: first.etag });
    expect(second.etag).not.toBe(first.etag);
    expect(await codeOf(retention(tenant).saveRetentionPolicy({ policy: {}, etag: first.etag }))).toBe("Aborted");
    expect(await codeOf(retention(tenant).saveRetentionPolicy({ policy: {}, etag: "not-an-etag" }))).toBe("Aborted");
    expect((await retention(tenant).getRetentionPolicy({})).policy?.failedExecutionMaxAge?.seconds).toBe(BigInt(2 * DAY));

    const err = await retention(tenant)
      .saveRetentionPolicy({ policy: { completedExecutionMaxAge: dur(59), routingDecisionMaxAge: { seconds: 3_600n, nanos: 5 }, closedCircuitBreakerMaxAge: dur(36_501 * DAY) } })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toContain("policy.completed_execution_max_age");
    expect(err?.rawMessage).toContain("policy.routing_decision_max_age");
    expect(err?.rawMessage).toContain("policy.closed_circuit_breaker_max_age");
    expect((await retention(tenant).getRetentionPolicy({})).etag).toBe(second.etag);
  });
});

describe("applying a policy", () => {
  it("keeps each terminal status for its own max age, never deletes incomplete executions, and a dry run deletes nothing", async () => {
    const tenant = newTenant();
    await retention(tenant).saveRetentionPolicy({
      policy: { completedExecutionMaxAge: dur(DAY), failedExecutionMaxAge: dur(7 * DAY), cancelledExecutionMaxAge: dur(0) },
    });
    await save(tenant, "completed-old", WorkflowStatus.COMPLETED, 2 * DAY);
    await save(tenant, "completed-new", WorkflowStatus.COMPLETED, 3_600);
    await save(tenant, "failed-2d", WorkflowStatus.FAILED, 2 * DAY);
    await save(tenant, "failed-8d", WorkflowStatus.FAILED, 8 * DAY);
    await save(tenant, "cancelled-1000d", WorkflowStatus.CANCELLED, 1_000 * DAY);
    await save(tenant, "running", WorkflowStatus.RUNNING);
    const all = await ids(tenant);
    // Another tenant, without a policy: never touched by this one's.
    const other = newTenant();
    await save(other, "completed-old", WorkflowStatus.COMPLETED, 2 * DAY);

    const dry = await retention(tenant).applyRetentionPolicy({ dryRun: true });
    expect(dry.deleted).toMatchObject({ completedExecutions: 1n, failedExecutions: 1n, cancelledExecutions: 0n });
    expect(await ids(tenant)).toEqual(all);

    const applied = await retention(tenant).applyRetentionPolicy({});
    expect(applied.deleted).toMatchObject({ completedExecutions: 1n, failedExecutions: 1n, cancelledExecutions: 0n });
    expect(applied.effectivePolicy?.failedExecutionMaxAge?.seconds).toBe(BigInt(7 * DAY));
    expect(await ids(tenant)).toEqual(["cancelled-1000d", "completed-new", "failed-2d", "running"]);
    expect(await ids(other)).toEqual(["completed-old"]);
    // Nothing left to do: a second run deletes nothing.
    expect((await retention(tenant).applyRetentionPolicy({})).deleted?.completedExecutions).toBe(0n);
  });

  it("keeps an execution under legal hold whatever the policy and DeleteWorkflowExecutions say; a save without the field keeps the hold", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    await retention(tenant).saveRetentionPolicy({ policy: { completedExecutionMaxAge: dur(DAY) } });
    const held = await save(tenant, "held", WorkflowStatus.COMPLETED, 10 * DAY, true);
    expect(held.legalHold).toBe(true);
    await save(tenant, "free", WorkflowStatus.COMPLETED, 10 * DAY);
    expect((await client.getWorkflowExecution({ executionId: "free" })).execution?.legalHold).toBeUndefined();
    // A client that does not know about holds saves the execution again: the hold stays.
    await save(tenant, "held", WorkflowStatus.COMPLETED, 10 * DAY);
    expect((await client.getWorkflowExecution({ executionId: "held" })).execution?.legalHold).toBe(true);

    const dry = await retention(tenant).applyRetentionPolicy({ dryRun: true });
    expect(dry.deleted?.completedExecutions).toBe(1n);
    expect(dry.heldExecutions).toBe(1n);
    const deleted = await client.deleteWorkflowExecutions({ completedBefore: ago(0) });
    expect(deleted.deletedCount).toBe(1n);
    expect(await ids(tenant)).toEqual(["held"]);
    const applied = await retention(tenant).applyRetentionPolicy({});
    expect(applied.deleted?.completedExecutions).toBe(0n);
    expect(applied.heldExecutions).toBe(1n);
    expect(await ids(tenant)).toEqual(["held"]);

    // Lifting the hold (false, explicitly) lets the policy delete it.
    await save(tenant, "held", WorkflowStatus.COMPLETED, 10 * DAY, false);
    expect((await retention(tenant).applyRetentionPolicy({})).deleted?.completedExecutions).toBe(1n);
    expect(await ids(tenant)).toEqual([]);
  });

  it("deletes old routing decisions, CLOSED breakers and the transitions of breakers that are not in another state", async () => {
    const tenant = newTenant();
    const audit = connectClient(RoutingAuditService, t.baseUrl, tenant);
    const breakers = connectClient(CircuitBreakerService, t.baseUrl, tenant);
    await retention(tenant).saveRetentionPolicy({
      policy: { routingDecisionMaxAge: dur(DAY), closedCircuitBreakerMaxAge: dur(DAY), circuitBreakerTransitionMaxAge: dur(DAY) },
    });
    await audit.recordRoutingDecisions({ decisions: [decision({ routedAt: ago(2 * DAY) }), decision({ routedAt: ago(2 * DAY) }), decision({ routedAt: ago(60) })] });
    // closed: opened then reset (two transitions), CLOSED; open: OPEN (one transition); recent: CLOSED, written now.
    await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "closed", state: CircuitState.OPEN } });
    await breakers.resetCircuitBreaker({ agentKey: "closed" });
    await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "open", state: CircuitState.OPEN } });
    await backdate(t.knex, tenant, 2 * DAY);
    await breakers.saveCircuitBreakerState({ circuitBreaker: { agentKey: "recent", state: CircuitState.CLOSED } });

    const dry = await retention(tenant).applyRetentionPolicy({ dryRun: true });
    expect(dry.deleted).toMatchObject({ routingDecisions: 2n, closedCircuitBreakers: 1n, circuitBreakerTransitions: 2n });
    const applied = await retention(tenant).applyRetentionPolicy({});
    expect(applied.deleted).toMatchObject({ routingDecisions: 2n, closedCircuitBreakers: 1n, circuitBreakerTransitions: 2n });
    expect((await audit.listRoutingDecisions({})).decisions).toHaveLength(1);
    const left = (await breakers.listCircuitBreakerStates({})).circuitBreakers.map((b) => b.agentKey).sort();
    expect(left).toEqual(["open", "recent"]);
    expect((await breakers.listCircuitBreakerTransitions({ agentKey: "closed" })).transitions).toHaveLength(0);
    expect((await breakers.listCircuitBreakerTransitions({ agentKey: "open" })).transitions).toHaveLength(1);
  });

  it("deletes in batches of the configured size, each its own statement", async () => {
    const tenant = newTenant();
    for (let i = 0; i < 7; i++) await save(tenant, `old-${i}`, WorkflowStatus.COMPLETED, 2 * DAY);
    const batches: number[] = [];
    const policy = { ...defaultConfig.retentionDefaults, completedExecutionMaxAge: DAY };
    const scope = new TenantScope(tenant, t.knex);
    const dry = await applyRetention(scope, policy, { dryRun: true, batchSize: 3 });
    expect(dry.counts.completedExecutions).toBe(7);
    const outcome = await applyRetention(scope, policy, { dryRun: false, batchSize: 3, onDeleted: (_r, _s, n) => batches.push(n) });
    expect(batches).toEqual([3, 3, 1]);
    expect(outcome.counts.completedExecutions).toBe(7);
    // Stopped between batches (shutdown): what was deleted stays deleted, the rest waits for the next pass.
    for (let i = 0; i < 7; i++) await save(tenant, `again-${i}`, WorkflowStatus.COMPLETED, 2 * DAY);
    let asked = 0;
    const stopped = await applyRetention(scope, policy, { dryRun: false, batchSize: 3, stopped: () => ++asked > 2 });
    expect(stopped).toMatchObject({ finished: false, counts: { completedExecutions: 6 } });
    expect(await ids(tenant)).toHaveLength(1);
  });
});

describe("background retention", () => {
  it("runs by itself every RETENTION_INTERVAL and exports what it deleted", async () => {
    const metrics = createMetrics({ maxAgentSeries: 0 });
    const server = await startTestServer({ retentionIntervalMs: 200 }, t.knex, undefined, { metrics });
    try {
      const tenant = newTenant();
      await retention(tenant).saveRetentionPolicy({ policy: { failedExecutionMaxAge: dur(DAY) } });
      for (let i = 0; i < 4; i++) await save(tenant, `f-${i}`, WorkflowStatus.FAILED, 2 * DAY);
      // The first pass comes within min(interval, 60 s); then every 200 ms.
      const completedRuns = async () => (await metrics.retentionRuns.get()).values.find((v) => v.labels.outcome === "completed")?.value ?? 0;
      const deadline = Date.now() + 30_000;
      while (((await ids(tenant)).length > 0 || (await completedRuns()) === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await ids(tenant)).toEqual([]);
      expect(await completedRuns()).toBeGreaterThanOrEqual(1);
      const counter = await metrics.retentionDeleted.get();
      expect(counter.values.find((v) => v.labels.status === "FAILED")?.value).toBe(4);
    } finally {
      await server.close();
    }
  });

  it(`two replicas (${backendName === "postgres" ? "two servers, each with its own pool, on one PostgreSQL database" : "two servers on one PGlite, in one process"}) running passes at the same time delete each row once, one pass at a time`, async () => {
    const knexes: Knex[] = backendName === "postgres" ? [await createTestDatabase(), await createTestDatabase()] : [t.knex, t.knex];
    const metrics = [createMetrics({ maxAgentSeries: 0 }), createMetrics({ maxAgentSeries: 0 })];
    const servers = await Promise.all(knexes.map((knex, i) => startTestServer({ retentionBatchSize: 1 }, knex, undefined, { metrics: metrics[i] })));
    try {
      const tenants = [newTenant(), newTenant()];
      let rows = 0;
      for (const tenant of tenants) {
        await retention(tenant).saveRetentionPolicy({ policy: { completedExecutionMaxAge: dur(DAY), routingDecisionMaxAge: dur(DAY) } });
        for (let i = 0; i < 12; i++) await save(tenant, `c-${i}`, WorkflowStatus.COMPLETED, 2 * DAY);
        await connectClient(RoutingAuditService, t.baseUrl, tenant).recordRoutingDecisions({
          decisions: Array.from({ length: 8 }, () => decision({ routedAt: ago(2 * DAY) })),
        });
        rows += 20;
      }
      // Both at once, each deleting one row per statement (batch size 1): the
      // second finds the first's lock and skips the round.
      const results = await Promise.all(servers.map((s) => s.server.retention.runOnce()));
      expect(results.map((r) => r.outcome).sort()).toEqual(["completed", "skipped"]);
      // Then again, both at once: nothing is left to delete, nothing is deleted twice.
      await Promise.all(servers.map((s) => s.server.retention.runOnce()));
      for (const tenant of tenants) expect(await ids(tenant)).toEqual([]);
      let deleted = 0;
      for (const m of metrics) for (const v of (await m.retentionDeleted.get()).values) deleted += v.value;
      expect(deleted).toBe(rows);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
      if (backendName === "postgres") await Promise.all(knexes.map((k) => k.destroy()));
    }
  });

  it("two ApplyRetentionPolicy calls at once (no lock between them) delete each row once", async () => {
    const tenant = newTenant();
    await retention(tenant).saveRetentionPolicy({ policy: { cancelledExecutionMaxAge: dur(DAY) } });
    for (let i = 0; i < 10; i++) await save(tenant, `x-${i}`, WorkflowStatus.CANCELLED, 2 * DAY);
    const both = await Promise.all([retention(tenant).applyRetentionPolicy({}), retention(tenant).applyRetentionPolicy({})]);
    const again = await retention(tenant).applyRetentionPolicy({});
    expect(both.reduce((n, r) => n + r.deleted!.cancelledExecutions, 0n) + again.deleted!.cancelledExecutions).toBe(10n);
    expect(await ids(tenant)).toEqual([]);
  });
});

/** Moves the tenant's breakers and transitions `seconds` into the past (the server sets their times). */
async function backdate(knex: Knex, tenant: string, seconds: number): Promise<void> {
  // The test's connection is a superuser's: row-level security does not apply.
  await knex.raw(`UPDATE circuit_breakers SET update_time = update_time - make_interval(secs => ?) WHERE tenant_id = ?`, [seconds, tenant]);
  await knex.raw(`UPDATE circuit_breaker_transitions SET transition_time = transition_time - make_interval(secs => ?) WHERE tenant_id = ?`, [seconds, tenant]);
}
