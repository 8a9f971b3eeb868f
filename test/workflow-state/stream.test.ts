import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type WorkflowExecution, WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { type DbStatus, INCOMPLETE, prng, type Row, seedExecutions, startedUs, STATUSES, ts } from "../support/executions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

const BATCH = 100;
const STREAM = "orchestration.state.v1.WorkflowStateService/StreamIncompleteWorkflows";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ streamBatchSize: BATCH });
});
afterAll(async () => {
  await t.close();
});

/**
 * `n` rows over two workflows and every status, with start times from a few
 * hundred values (some 1 µs apart), so that ties on started_at span batch
 * boundaries; fixed-length lowercase ids, not in insertion order.
 */
function dataset(n: number, seedValue: number, statuses: readonly DbStatus[] = STATUSES): Row[] {
  const rand = prng(seedValue);
  const seen = new Set<string>();
  const rows: Row[] = [];
  while (rows.length < n) {
    const id = `wf-${Math.floor(rand() * 36 ** 7).toString(36).padStart(7, "0")}`;
    if (seen.has(id)) continue;
    seen.add(id);
    rows.push({
      id,
      workflow: rand() < 0.5 ? "ingest" : "review",
      status: statuses[Math.floor(rand() * statuses.length)]!,
      startedUs: Math.floor(rand() * 300) * 1_000_000 + (rand() < 0.3 ? 1 : 0),
    });
  }
  return rows;
}

/** The stream order: oldest started_at first, then execution_id ascending. */
function oldestFirst(a: Row, b: Row): number {
  if (a.startedUs !== b.startedUs) return a.startedUs - b.startedUs;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const ids = (rows: readonly { id: string }[]) => rows.map((r) => r.id);

/** Reads a whole stream. */
async function readAll(tenant: string, workflowName = ""): Promise<WorkflowExecution[]> {
  const out: WorkflowExecution[] = [];
  for await (const msg of workflowClient(t.baseUrl, tenant).streamIncompleteWorkflows({ workflowName })) {
    out.push(msg.execution!);
  }
  return out;
}

/** The "rpc" log lines of this tenant's streams. */
function streamLogs(tenant: string) {
  return t.logs.filter((l) => l.msg === "rpc" && l.procedure === STREAM && l.tenant === tenant);
}

describe(`StreamIncompleteWorkflows on ${backendName}`, () => {
  it(`streams exactly the PENDING, RUNNING and BLOCKED executions of 3,000, oldest first, across batches of ${BATCH}`, async () => {
    const tenant = newTenant();
    const rows = dataset(3_000, 1);
    await seedExecutions(t.knex, tenant, rows);
    // Another tenant's incomplete executions, with the same ids, are never sent.
    await seedExecutions(t.knex, newTenant(), rows.map((r) => ({ ...r, status: "RUNNING" })));
    const expected = rows.filter((r) => INCOMPLETE.includes(r.status)).sort(oldestFirst);
    // Several batches, and ties on started_at across their boundaries.
    expect(expected.length).toBeGreaterThan(10 * BATCH);
    const boundaries = Array.from({ length: Math.floor(expected.length / BATCH) }, (_, k) => (k + 1) * BATCH).filter((i) => i < expected.length);
    expect(boundaries.some((i) => expected[i]!.startedUs === expected[i - 1]!.startedUs)).toBe(true);

    const got = await readAll(tenant);
    expect(got.map((e) => e.executionId)).toEqual(ids(expected));
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const e of got) {
      const r = byId.get(e.executionId)!;
      expect([e.workflowName, WorkflowStatus[e.status], startedUs(e), e.completedAt]).toEqual([r.workflow, r.status, r.startedUs, undefined]);
    }
    const [log] = streamLogs(tenant);
    expect(log).toMatchObject({ code: "OK", messages: expected.length });
  });

  it("when the incomplete executions fill whole batches exactly, each is sent once and the stream ends", async () => {
    const tenant = newTenant();
    const incomplete = dataset(2 * BATCH, 2, INCOMPLETE);
    await seedExecutions(t.knex, tenant, [...incomplete, ...dataset(50, 3, ["COMPLETED", "FAILED", "CANCELLED"]).map((r) => ({ ...r, id: `done-${r.id}` }))]);
    const got = await readAll(tenant);
    expect(got.map((e) => e.executionId)).toEqual(ids([...incomplete].sort(oldestFirst)));
  });

  it("filtered by workflow_name, streams only that workflow's incomplete executions, oldest first", async () => {
    const tenant = newTenant();
    const rows = dataset(1_000, 4);
    await seedExecutions(t.knex, tenant, rows);
    for (const workflow of ["review", "ingest"]) {
      const got = await readAll(tenant, workflow);
      expect(got.map((e) => e.executionId)).toEqual(ids(rows.filter((r) => r.workflow === workflow && INCOMPLETE.includes(r.status)).sort(oldestFirst)));
    }
    expect(await readAll(tenant, "no-such-workflow")).toEqual([]);
  });

  it("streams executions saved through the RPC in FIFO order, ties by execution_id, and reflects their current status", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    const saves: [string, WorkflowStatus, number][] = [
      ["c", WorkflowStatus.RUNNING, 3_000_000],
      ["b", WorkflowStatus.BLOCKED, 2_000_000],
      ["a", WorkflowStatus.PENDING, 2_000_000],
      ["z", WorkflowStatus.PENDING, 1_000_000],
      ["done", WorkflowStatus.COMPLETED, 500_000],
      ["micro", WorkflowStatus.RUNNING, 2_000_001],
    ];
    for (const [id, status, us] of saves) {
      await client.saveWorkflowExecution({ execution: { executionId: id, workflowName: "w", status, startedAt: ts(us) } });
    }
    expect((await readAll(tenant)).map((e) => e.executionId)).toEqual(["z", "a", "b", "micro", "c"]);
    // Finishing one takes it out; resuming a finished one puts it back.
    await client.saveWorkflowExecution({ execution: { executionId: "a", workflowName: "w", status: WorkflowStatus.FAILED } });
    await client.saveWorkflowExecution({ execution: { executionId: "done", workflowName: "w", status: WorkflowStatus.RUNNING } });
    expect((await readAll(tenant)).map((e) => e.executionId)).toEqual(["done", "z", "b", "micro", "c"]);
  });

  it("is not a snapshot: executions saved ahead of the cursor while it runs are sent, those behind it are not", async () => {
    const tenant = newTenant();
    const rows = dataset(3_000, 7, INCOMPLETE);
    await seedExecutions(t.knex, tenant, rows);
    const order = [...rows].sort(oldestFirst);
    const client = workflowClient(t.baseUrl, tenant);
    const it = client.streamIncompleteWorkflows({})[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value?.execution?.executionId).toBe(order[0]!.id);
    // While the client holds the stream at its first message (the server is at most
    // a few batches further): one new execution behind the cursor, one far ahead,
    // and the last execution finished before the stream reaches it.
    const last = order[order.length - 1]!;
    await client.saveWorkflowExecution({ execution: { executionId: "behind", workflowName: "w", status: WorkflowStatus.PENDING, startedAt: ts(0) } });
    await client.saveWorkflowExecution({ execution: { executionId: "ahead", workflowName: "w", status: WorkflowStatus.PENDING, startedAt: ts(900_000_000) } });
    await client.saveWorkflowExecution({ execution: { executionId: last.id, workflowName: last.workflow, status: WorkflowStatus.COMPLETED } });
    const got = [first.value!.execution!.executionId];
    for (;;) {
      const next = await it.next();
      if (next.done) break;
      got.push(next.value.execution!.executionId);
    }
    expect(got).toEqual([...ids(order.slice(0, -1)), "ahead"]);
  });

  it("with no incomplete execution, the stream ends cleanly without a message", async () => {
    const empty = newTenant();
    expect(await readAll(empty)).toEqual([]);
    const finished = newTenant();
    await seedExecutions(t.knex, finished, dataset(300, 5, ["COMPLETED", "FAILED", "CANCELLED"]));
    expect(await readAll(finished)).toEqual([]);
    for (const tenant of [empty, finished]) expect(streamLogs(tenant)).toMatchObject([{ code: "OK", messages: 0 }]);
  });

  it("stops reading when the client cancels, and the server keeps serving", async () => {
    const tenant = newTenant();
    const rows = dataset(3_000, 6, INCOMPLETE);
    await seedExecutions(t.knex, tenant, rows);
    // Every batch the stream reads for this tenant.
    const batches: string[] = [];
    const onQuery = (q: { sql: string; bindings?: unknown[] }) => {
      if (q.bindings?.includes(tenant) && /order by "started_at" asc/.test(q.sql)) batches.push(q.sql);
    };
    t.knex.on("query", onQuery);
    try {
      const client = workflowClient(t.baseUrl, tenant);
      const abort = new AbortController();
      const it = client.streamIncompleteWorkflows({}, { signal: abort.signal })[Symbol.asyncIterator]();
      const first: string[] = [];
      for (let i = 0; i < 5; i++) {
        const next = await it.next();
        expect(next.done).toBe(false);
        first.push(next.value!.execution!.executionId);
      }
      expect(first).toEqual(ids([...rows].sort(oldestFirst).slice(0, 5)));
      abort.abort();
      // The client may still hand out what it had already received; then the call fails as cancelled.
      let ended: unknown;
      for (let i = 0; i < rows.length && ended === undefined; i++) {
        ended = await it.next().then((r) => (r.done ? "completed" : undefined), (e: unknown) => e);
      }
      expect(ConnectError.from(ended).code).toBe(Code.Canceled);

      // The server's call ends without completing, having sent far fewer messages than there are rows.
      await vi.waitFor(() => expect(streamLogs(tenant)).toHaveLength(1), { timeout: 5_000 });
      const [log] = streamLogs(tenant);
      expect(log).toMatchObject({ code: "CANCELED", level: "info" });
      const sent = log!.messages as number;
      expect(sent).toBeGreaterThanOrEqual(5);
      expect(sent).toBeLessThan(rows.length / 2);
      // It read only the batches it sent from (plus at most the one in flight), and no more afterwards.
      const readBefore = batches.length;
      expect(readBefore).toBeLessThanOrEqual(Math.ceil(sent / BATCH) + 1);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(batches.length).toBe(readBefore);
      expect(readBefore).toBeLessThan(rows.length / BATCH / 2);

      // The same client, and a new stream, still get answers.
      expect((await client.listWorkflowExecutions({ pageSize: 1 })).executions).toHaveLength(1);
      expect((await readAll(tenant, "review")).length).toBe(rows.filter((r) => r.workflow === "review").length);
    } finally {
      t.knex.off("query", onQuery);
    }
  });
});
