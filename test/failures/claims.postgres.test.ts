// Several replicas, one truth: real server processes (src/main.ts, built) on one
// PostgreSQL database, and claimers spread over them.
//
// - 12 claimers over 3 server processes against 10,000 incomplete executions:
//   every execution is claimed exactly once while the leases live, and the
//   union is all 10,000.
// - A server process SIGKILLed in the middle of a claim, and a claiming client
//   process (test/failures/support/claiming-client.ts) SIGKILLed in the middle
//   of its work: every execution they held is claimed by another owner once
//   its 5-second lease expired, with a greater fencing token, and none is lost.
//
// PostgreSQL only: PGlite is one process (its claims are tested in
// test/workflow-state/leases.test.ts).
import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkflowExecution } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createTestDatabase, postgresEnv } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { newTenant } from "../support/server.js";
import { killAll, onLines } from "../support/processes.js";
import { type ServerProcess, startServerProcess } from "../support/built-server.js";

const root = path.resolve(import.meta.dirname, "../..");
const LONG = { seconds: 600n, nanos: 0 };
const SHORT = { seconds: 5n, nanos: 0 };

let knex: Knex;
const servers: ServerProcess[] = [];
beforeAll(async () => {
  knex = await createTestDatabase();
  const env = { ...postgresEnv(), DATABASE_POOL_MAX: "8" };
  servers.push(...(await Promise.all([0, 1, 2].map(() => startServerProcess(env)))));
}, 120_000);
const tenants: string[] = [];
afterAll(async () => {
  killAll();
  // 14,000 executions: not left behind for the tests that count rows across tenants.
  await knex("workflow_executions").whereIn("tenant_id", tenants).delete();
  await knex.destroy();
});

/** `n` incomplete executions of `tenant`, x-00001 first, three per started_at millisecond (ties across batches). */
async function seed(tenant: string, n: number): Promise<string[]> {
  tenants.push(tenant);
  await knex.raw(
    `INSERT INTO workflow_executions (tenant_id, execution_id, workflow_name, status, started_at)
     SELECT ?::uuid, 'x-' || lpad(i::text, 5, '0'), 'claims', (ARRAY['PENDING', 'RUNNING', 'BLOCKED'])[1 + i % 3],
            timestamptz '2026-11-26T00:00:00Z' + (i / 3) * interval '1 millisecond'
     FROM generate_series(1, ?::int) AS i`,
    [tenant, n],
  );
  return Array.from({ length: n }, (_, i) => `x-${String(i + 1).padStart(5, "0")}`);
}

/** Claims for `owner` through `server` until the stream ends; `onEach` runs per execution (a slow reader awaits in it). */
async function claim(
  server: ServerProcess,
  tenant: string,
  owner: string,
  leaseDuration = LONG,
  onEach?: (e: WorkflowExecution) => Promise<void> | void,
): Promise<WorkflowExecution[]> {
  const out: WorkflowExecution[] = [];
  for await (const { execution } of workflowClient(server.baseUrl, tenant).claimIncompleteWorkflows({ owner, leaseDuration })) {
    out.push(execution!);
    await onEach?.(execution!);
  }
  return out;
}

/** The stored lease owner of each execution of `tenant` (null: none). */
async function owners(tenant: string): Promise<Map<string, string | null>> {
  const { rows } = await knex.raw<{ rows: { execution_id: string; lease_owner: string | null }[] }>(
    "SELECT execution_id, owner AS lease_owner FROM workflow_executions LEFT JOIN execution_leases USING (tenant_id, execution_id) WHERE tenant_id = ?",
    [tenant],
  );
  return new Map(rows.map((r) => [r.execution_id, r.lease_owner]));
}

const idsOf = (list: readonly WorkflowExecution[]) => list.map((e) => e.executionId);

/**
 * A rescuer claiming through `server` until it has claimed as many as `held`
 * (their leases expire first), 30 s at most; returns what it claimed.
 */
async function rescue(server: ServerProcess, tenant: string, held: ReadonlySet<string>): Promise<WorkflowExecution[]> {
  const rescued: WorkflowExecution[] = [];
  const deadline = Date.now() + 30_000;
  while (rescued.length < held.size && Date.now() < deadline) {
    rescued.push(...(await claim(server, tenant, "rescuer")));
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return rescued;
}

describe("claims across three server processes on one PostgreSQL database", () => {
  it("12 claimers against 10,000 incomplete executions: each claimed exactly once, the union is all of them", { timeout: 180_000 }, async () => {
    const tenant = newTenant();
    const all = await seed(tenant, 10_000);
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => claim(servers[i % 3]!, tenant, `claimer-${i}`)),
    );
    const claimed = results.flatMap(idsOf);
    expect(claimed.length).toBe(10_000);
    expect(new Set(claimed).size).toBe(10_000);
    expect(new Set(claimed)).toEqual(new Set(all));
    // Several claimers on every server took part.
    expect(results.filter((r) => r.length > 0).length).toBeGreaterThanOrEqual(6);
    // What each claimer received is what the database says it holds, with distinct fencing tokens.
    const stored = await owners(tenant);
    results.forEach((list, i) => {
      for (const e of list) expect(stored.get(e.executionId), e.executionId).toBe(`claimer-${i}`);
    });
    const tokens = new Set(results.flat().map((e) => e.lease!.fencingToken));
    expect(tokens.size).toBe(10_000);
    // Nothing is left to claim while the leases live.
    expect(await claim(servers[0]!, tenant, "late")).toEqual([]);
  });

  // The two kills below run side by side (it.concurrent), each on a tenant of
  // its own: most of each is a process starting and leases running out, and
  // neither depends on the other's load.
  it.concurrent("a server process SIGKILLed in the middle of a claim: every execution it held is claimed by another owner after expiry, none lost", { timeout: 120_000 }, async () => {
    const tenant = newTenant();
    const all = await seed(tenant, 2_000);
    const victim = await startServerProcess({ ...postgresEnv(), DATABASE_POOL_MAX: "4" });
    // A slow claimer on the victim: its stream stays open, a batch at a time.
    const received: WorkflowExecution[] = [];
    let killed = false;
    const slow = claim(victim, tenant, "victim-server", SHORT, async (e) => {
      received.push(e);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }).catch(() => undefined);
    let slowEnded = false;
    void slow.then(() => (slowEnded = true));
    const waitFor = async (count: number) => {
      while (received.length < count) {
        if (slowEnded) throw new Error(`the victim's claim ended after ${received.length} executions`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    // Its first batch (STREAM_BATCH_SIZE, 100) is claimed before anyone else
    // claims: with steady claimers racing it, rows it locked could be leased by
    // a claim that committed first (left out of its batch, as they must be), and
    // its stream could end before the kill below.
    await waitFor(1);
    // Steady claimers on the other servers take the rest meanwhile.
    const steady = Promise.all([0, 1, 2, 3].map((i) => claim(servers[i % 2]!, tenant, `steady-${i}`)));
    // Killed halfway through its first batch: it holds rows it sent and rows it
    // claimed and never sent.
    await waitFor(50);
    victim.child.kill("SIGKILL");
    killed = true;
    expect(await victim.exited).toMatchObject({ code: null, signal: "SIGKILL" });
    await slow;
    const steadyClaimed = (await steady).flat();

    const before = await owners(tenant);
    const held = new Set([...before].filter(([, owner]) => owner === "victim-server").map(([id]) => id));
    // It held what it had sent, and what it had claimed and not sent (the kill released nothing).
    for (const e of received) expect(held.has(e.executionId)).toBe(true);
    expect(held.size).toBeGreaterThanOrEqual(received.length);

    // What nobody else claimed: what the victim held (and, would any be, executions claimable all along).
    const steadyIds = new Set(idsOf(steadyClaimed));
    const left = new Set(all.filter((id) => !steadyIds.has(id)));
    for (const id of held) expect(left.has(id)).toBe(true);
    const rescued = await rescue(servers[2]!, tenant, left);
    expect(killed).toBe(true);
    expect(new Set(idsOf(rescued))).toEqual(left);
    const victimTokens = new Map(received.map((e) => [e.executionId, e.lease!.fencingToken]));
    for (const e of rescued) {
      if (victimTokens.has(e.executionId)) expect(e.lease!.fencingToken).toBeGreaterThan(victimTokens.get(e.executionId)!);
    }
    // None lost: every execution is held by a live owner, each exactly once.
    const after = await owners(tenant);
    expect([...after.values()].filter((o) => o === null || o === "victim-server")).toEqual([]);
    const final = [...idsOf(steadyClaimed), ...idsOf(rescued)];
    expect(final.length).toBe(all.length);
    expect(new Set(final)).toEqual(new Set(all));
  });

  it.concurrent("a claiming client process SIGKILLed in the middle of its work: every execution it held is claimed by another owner after expiry, none lost", { timeout: 120_000 }, async () => {
    const tenant = newTenant();
    const all = await seed(tenant, 2_000);
    const child: ChildProcess = spawn(
      process.execPath,
      ["--import", "tsx", "test/failures/support/claiming-client.ts", servers[0]!.baseUrl, tenant, "victim-client"],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
    const claimedByChild = new Map<string, bigint>();
    let renewals = 0;
    onLines(child.stdout!, (line) => {
      const msg = JSON.parse(line) as { claimed?: string; token?: string; renewed?: number };
      if (msg.claimed !== undefined) claimedByChild.set(msg.claimed, BigInt(msg.token!));
      if ((msg.renewed ?? 0) > 0) renewals++;
    });
    try {
      // Let it claim and renew for a while, with steady claimers on the other servers.
      const deadline = Date.now() + 30_000;
      while ((claimedByChild.size < 100 || renewals < 1) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(claimedByChild.size).toBeGreaterThanOrEqual(100);
      expect(renewals).toBeGreaterThanOrEqual(1);
      const steady = await Promise.all([0, 1, 2].map((i) => claim(servers[1 + (i % 2)]!, tenant, `steady-${i}`)));
      child.kill("SIGKILL");
      expect(await exited).toBe("SIGKILL");

      const before = await owners(tenant);
      const held = new Set([...before].filter(([, owner]) => owner === "victim-client").map(([id]) => id));
      // It held everything it had taken (its renewals kept the leases alive), and what the server had sent it
      // and it had not read yet.
      expect(held.size).toBeGreaterThanOrEqual(100);
      for (const id of claimedByChild.keys()) expect(held.has(id), id).toBe(true);

      // What nobody else claimed: what the child held, and what the server claimed for it and never
      // sent (released when its connection died).
      const steadyIds = new Set(steady.flat().map((e) => e.executionId));
      const left = new Set(all.filter((id) => !steadyIds.has(id)));
      for (const id of held) expect(left.has(id)).toBe(true);
      const rescued = await rescue(servers[2]!, tenant, left);
      expect(new Set(idsOf(rescued))).toEqual(left);
      for (const e of rescued) {
        const token = claimedByChild.get(e.executionId);
        if (token !== undefined) expect(e.lease!.fencingToken).toBeGreaterThan(token);
      }
      const after = await owners(tenant);
      expect([...after.values()].filter((o) => o === null || o === "victim-client")).toEqual([]);
      const final = [...steady.flat().map((e) => e.executionId), ...idsOf(rescued)];
      expect(final.length).toBe(all.length);
      expect(new Set(final)).toEqual(new Set(all));
    } finally {
      child.kill("SIGKILL");
    }
  });
});
