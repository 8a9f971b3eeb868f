// Issue 12, item 7: a database whose defaults differ from what the code
// reads (DateStyle 'SQL, DMY', a TimeZone with a half-hour offset,
// extra_float_digits 0) answered every RPC INTERNAL after the write had
// committed. Each backend gets a database of its own with those defaults
// (PostgreSQL: ALTER DATABASE on a scratch database of TEST_DATABASE_URL's
// server; PGlite: ALTER SYSTEM in a data directory, reopened), and the RPCs
// that write and read timestamps and doubles must answer the right values.
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createDatabase, migrate } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";
import { breakerClient } from "../circuit-breaker/helpers.js";
import { backendName, createPgliteDataDir, postgresOptions } from "../support/backend.js";
import { connectClient, workflowClient } from "../support/clients.js";
import { at, decision, micros } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// What a careless (or foreign) database might default to: every one of these
// changes the text PostgreSQL sends for a timestamptz or a float8.
const HOSTILE_DEFAULTS = ["DateStyle = 'SQL, DMY'", "TimeZone = 'America/St_Johns'", "extra_float_digits = 0"];

let admin: Knex | undefined;
let scratch: string | undefined;
let pgliteDir: string | undefined;
let knex: Knex;
let t: TestServer;

beforeAll(async () => {
  const url = process.env.TEST_DATABASE_URL;
  if (url) {
    admin = createDatabase({ ...postgresOptions(url), poolMax: 1, logger: silentLogger });
    scratch = `session_settings_${randomUUID().replaceAll("-", "")}`;
    await admin.raw(`CREATE DATABASE ${scratch}`);
    for (const setting of HOSTILE_DEFAULTS) await admin.raw(`ALTER DATABASE ${scratch} SET ${setting}`);
    const scratchUrl = new URL(url);
    scratchUrl.pathname = `/${scratch}`;
    // One connection: the last test can reset the session of every connection there is.
    knex = createDatabase({ ...postgresOptions(scratchUrl.toString()), poolMax: 1, logger: silentLogger });
  } else {
    // A data directory as initdb leaves it (the run's template: initdb itself is seconds), migrated below under those defaults.
    pgliteDir = await createPgliteDataDir("session-settings-", "empty");
    // PGlite reads no per-database settings (it runs single-user), but it
    // reads postgresql.auto.conf in its data directory, which ALTER SYSTEM writes.
    const pglite = new PGlite(pgliteDir);
    for (const setting of HOSTILE_DEFAULTS) await pglite.exec(`ALTER SYSTEM SET ${setting}`);
    await pglite.close();
    knex = createDatabase({ dataDir: pgliteDir, logger: silentLogger });
  }
  await migrate(knex);
  t = await startTestServer({}, knex);
}, 60_000);

afterAll(async () => {
  await t?.close();
  await knex?.destroy();
  if (admin !== undefined && scratch !== undefined) await admin.raw(`DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`);
  await admin?.destroy();
  if (pgliteDir !== undefined) fs.rmSync(pgliteDir, { recursive: true, force: true });
});

/** Milliseconds since the epoch of a Timestamp. */
const ms = (ts: Parameters<typeof timestampDate>[0] | undefined) => timestampDate(ts!).getTime();

describe(`a database whose defaults are DateStyle 'SQL, DMY', TimeZone America/St_Johns, extra_float_digits 0 (${backendName})`, () => {
  it("the database really has them: they are what a session starts with (reset_val)", async () => {
    // Guards the test itself: without these defaults it would prove nothing.
    const { rows } = await knex.raw<{ rows: { name: string; reset_val: string }[] }>(
      "SELECT name, reset_val FROM pg_settings WHERE name IN ('DateStyle', 'TimeZone', 'extra_float_digits') ORDER BY name COLLATE \"C\"",
    );
    expect(rows).toEqual([
      { name: "DateStyle", reset_val: "SQL, DMY" },
      { name: "TimeZone", reset_val: "America/St_Johns" },
      { name: "extra_float_digits", reset_val: "0" },
    ]);
  });

  it("workflow executions: save, get and list answer, with the times written and the server's clock", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    // The 3rd of February: read as day-month or month-day, it would move.
    const startedAt = timestampFromDate(new Date("2026-02-03T04:05:06.789Z"));
    const before = Date.now();
    const saved = await client.saveWorkflowExecution({
      execution: { executionId: "e", workflowName: "wf", status: WorkflowStatus.RUNNING, startedAt, context: { step: 1 } },
    });
    const after = Date.now();
    const execution = saved.execution!;
    expect(ms(execution.startedAt)).toBe(ms(startedAt));
    // Within the call (1 s of slack for clocks): not shifted by a time zone.
    expect(ms(execution.createTime)).toBeGreaterThanOrEqual(before - 1_000);
    expect(ms(execution.createTime)).toBeLessThanOrEqual(after + 1_000);

    const got = (await client.getWorkflowExecution({ executionId: "e" })).execution!;
    expect(got.startedAt).toEqual(execution.startedAt);
    expect(got.createTime).toEqual(execution.createTime);
    const listed = (await client.listWorkflowExecutions({})).executions;
    expect(listed.map((e) => e.executionId)).toEqual(["e"]);
    expect(listed[0]!.updateTime).toEqual(execution.updateTime);
  });

  it("circuit breakers: outcomes open a breaker, whose times are now and whose reset time is in the future", async () => {
    const client = breakerClient(t.baseUrl, newTenant());
    const before = Date.now();
    let last;
    for (let i = 0; i < 10 && last?.circuitBreaker?.state !== CircuitState.OPEN; i++) {
      last = await client.recordCallOutcome({ agentKey: "agent", success: false, duration: micros(1_000) });
    }
    const breaker = last!.circuitBreaker!;
    expect(breaker.state).toBe(CircuitState.OPEN);
    expect(ms(breaker.openedAt)).toBeGreaterThanOrEqual(before - 1_000);
    expect(ms(breaker.openedAt)).toBeLessThanOrEqual(Date.now() + 1_000);
    expect(ms(breaker.resetAt)).toBeGreaterThan(ms(breaker.openedAt));
    const got = (await client.getCircuitBreakerState({ agentKey: "agent" })).circuitBreaker!;
    expect(got.updateTime).toEqual(breaker.updateTime);
    const permission = await client.acquirePermission({ agentKey: "agent" });
    expect(permission.permitted).toBe(false);
    expect(ms(permission.retryTime)).toBe(ms(breaker.resetAt));
  });

  it("routing audit and statistics: times and a double come back exactly", async () => {
    const tenant = newTenant();
    const audit = connectClient(RoutingAuditService, t.baseUrl, tenant);
    // 0.1 + 0.2 needs 17 significant digits: extra_float_digits 0 would send 15.
    const score = 0.1 + 0.2;
    const routedAt = at(0, 123_456);
    const sent = decision({ routedAt, agentScore: score, taskDuration: micros(2_000) });
    const recorded = (await audit.recordRoutingDecision({ decision: sent, updateStatistics: true })).decision!;
    expect(recorded.routedAt).toEqual(routedAt);
    expect(recorded.agentScore).toBe(score);
    const listed = (await audit.listRoutingDecisions({})).decisions;
    expect(listed.map((d) => [d.decisionId, d.agentScore, d.routedAt])).toEqual([[sent.decisionId, score, routedAt]]);

    const statistics = connectClient(StatisticsService, t.baseUrl, tenant);
    const before = Date.now();
    const outcome = (await statistics.recordTaskOutcome({ agentKey: "agent-b", success: true, duration: micros(5) })).statistics!;
    expect(ms(outcome.updateTime)).toBeGreaterThanOrEqual(before - 1_000);
    expect(ms(outcome.updateTime)).toBeLessThanOrEqual(Date.now() + 1_000);
    const got = (await statistics.getAgentStatistics({ agentKey: "agent-a" })).statistics!;
    expect(got.lastTaskTime).toEqual(routedAt);
  });

  it("a session that lost its settings (a pooler's server connection that never ran our SET): each call sets them for itself", async () => {
    // RESET ALL brings the one session (PGlite's, or the pool's only
    // connection) back to the database's defaults, as a connection PgBouncer
    // opened for another client would be.
    await knex.raw("RESET ALL");
    const client = workflowClient(t.baseUrl, newTenant());
    const startedAt = timestampFromDate(new Date("2026-02-03T04:05:06.789Z"));
    const saved = (await client.saveWorkflowExecution({
      execution: { executionId: "e", workflowName: "wf", status: WorkflowStatus.RUNNING, startedAt },
    })).execution!;
    expect(ms(saved.startedAt)).toBe(ms(startedAt));
    const audit = connectClient(RoutingAuditService, t.baseUrl, newTenant());
    const score = 0.1 + 0.2;
    expect((await audit.recordRoutingDecision({ decision: decision({ agentScore: score }) })).decision!.agentScore).toBe(score);
    // The settings were the transactions' own: the session still has the database's.
    const { rows } = await knex.raw<{ rows: { ds: string }[] }>("SELECT current_setting('DateStyle') AS ds");
    expect(rows[0]!.ds).toBe("SQL, DMY");
  });
});
