import * as http2 from "node:http2";
import { create, fromBinary, type MessageInitShape, toBinary, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  StreamIncompleteWorkflowsResponseSchema,
  type WorkflowExecution,
  WorkflowExecutionSchema,
  WorkflowStateService,
  WorkflowStatus,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";
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

/**
 * An execution with every field set: a definition with step parameters, a
 * nested context (unicode, numbers, nulls, lists, integer-like keys), step
 * records with times, step outputs and labels.
 */
function richExecution(i: number, status: WorkflowStatus): MessageInitShape<typeof WorkflowExecutionSchema> {
  return {
    executionId: `rich-${String(i).padStart(4, "0")}`,
    workflowName: i % 2 === 0 ? "fulfil-order" : "review-ü",
    status,
    definition: {
      name: "fulfil-order",
      version: "1.4.0",
      steps: [
        { stepId: "fetch", name: "Fetch", requiredCapability: "erp-read", taskType: "lookup", parameters: { table: "orders", limit: 10 }, timeout: { seconds: 30n } },
        { stepId: "pay", dependsOn: ["fetch"], retryPolicy: { maxAttempts: 3, initialBackoff: { nanos: 500_000_000 }, backoffMultiplier: 2 } },
      ],
    },
    context: {
      order: { id: i, items: [{ sku: "SKU-1", qty: 2, price: 19.99 }, { sku: "SKU-2", qty: 1, price: -0.5 }], gift: i % 3 === 0, note: null },
      customer: { name: "Müller 日本 😀", "10": "ten", "2": "two", tags: [], nested: { deeper: { deepest: ["x".repeat(200 + i)] } } },
    },
    stepExecutions: [
      { stepId: "fetch", status: WorkflowStatus.COMPLETED, agentKey: "erp-agent", attempt: 1, startedAt: ts(i), completedAt: ts(i + 1_500_000) },
      { stepId: "pay", status: WorkflowStatus.RUNNING, agentKey: "pay-agent", attempt: 2, startedAt: ts(-123_456_789), errorMessage: "retrying: timeout" },
    ],
    stepOutputs: { fetch: { kind: { case: "structValue", value: { fields: { rows: { kind: { case: "numberValue", value: 3 } } } } } } },
    errorMessage: i % 5 === 0 ? "last attempt failed" : "",
    startedAt: ts(Math.floor(i / 3) * 1_000_000 + (i % 7)),
    initiatedBy: "user:ada",
    labels: { team: "fulfilment", shard: String(i % 4), empty: "" },
  };
}

/** One client per protocol and codec the server speaks. */
const TRANSPORTS = [
  ["gRPC", createGrpcTransport, true],
  ["gRPC, JSON", createGrpcTransport, false],
  ["gRPC-Web", createGrpcWebTransport, true],
  ["gRPC-Web, JSON", createGrpcWebTransport, false],
  ["Connect", createConnectTransport, true],
  ["Connect, JSON", createConnectTransport, false],
] as const;

/** The raw gRPC response body of a stream: the payload of each message, as the server framed it. */
async function rawGrpcStream(tenant: string): Promise<{ payloads: Buffer[]; status: string | undefined }> {
  const session = http2.connect(t.baseUrl);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/orchestration.state.v1.WorkflowStateService/StreamIncompleteWorkflows",
        "content-type": "application/grpc",
        te: "trailers",
        [TENANT_HEADER]: tenant,
      });
      req.end(Buffer.from([0, 0, 0, 0, 0])); // one uncompressed, empty request message
      const chunks: Buffer[] = [];
      let status: string | undefined;
      req.on("trailers", (trailers) => (status = String(trailers["grpc-status"])));
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("error", reject);
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const payloads: Buffer[] = [];
        for (let at = 0; at < body.length; ) {
          expect(body[at]).toBe(0); // not compressed
          const length = body.readUInt32BE(at + 1);
          payloads.push(body.subarray(at + 5, at + 5 + length));
          at += 5 + length;
        }
        resolve({ payloads, status });
      });
    });
  } finally {
    session.close();
  }
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
  it("sends every field of each execution as GetWorkflowExecution returns it, over gRPC, gRPC-Web and Connect, in binary and JSON", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    const n = 2 * BATCH + 37;
    // Saved and read at once, over one connection: each execution carries its
    // own started_at, so the stream's order does not depend on the saves'.
    await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const status = i % 10 === 9 ? WorkflowStatus.COMPLETED : [WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.BLOCKED][i % 3]!;
        return client.saveWorkflowExecution({ execution: richExecution(i, status) });
      }),
    );
    // The reference: every incomplete execution as GetWorkflowExecution returns it, in stream order.
    const stored: WorkflowExecution[] = await Promise.all(
      Array.from({ length: n }, async (_, i) => (await client.getWorkflowExecution({ executionId: `rich-${String(i).padStart(4, "0")}` })).execution!),
    );
    const key = (e: WorkflowExecution) => [e.startedAt!.seconds, e.startedAt!.nanos, e.executionId] as const;
    const expected = stored
      .filter((e) => e.status !== WorkflowStatus.COMPLETED)
      .sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        return x[0] !== y[0] ? (x[0] < y[0] ? -1 : 1) : x[1] !== y[1] ? x[1] - y[1] : x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0;
      })
      .map((e) => toJson(WorkflowExecutionSchema, e));
    expect(expected.length).toBeGreaterThan(2 * BATCH);

    for (const [name, transport, useBinaryFormat] of TRANSPORTS) {
      const streaming = createClient(
        WorkflowStateService,
        transport({ baseUrl: t.baseUrl, httpVersion: "2", useBinaryFormat, interceptors: [(next) => (req) => (req.header.set(TENANT_HEADER, tenant), next(req))] }),
      );
      const got: unknown[] = [];
      for await (const msg of streaming.streamIncompleteWorkflows({})) got.push(toJson(WorkflowExecutionSchema, msg.execution!));
      expect(got, name).toEqual(expected);
    }
  });

  it("over gRPC, each message is byte for byte the response built from the stored execution", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    const n = BATCH + 11;
    await Promise.all(Array.from({ length: n }, (_, i) => client.saveWorkflowExecution({ execution: richExecution(i, WorkflowStatus.RUNNING) })));
    const { payloads, status } = await rawGrpcStream(tenant);
    expect(status).toBe("0");
    expect(payloads).toHaveLength(n);
    // Decoding and encoding again is the identity for these messages, so this
    // compares with the bytes the general path (executionFromRow, toBinary) sends.
    const decoded = payloads.map((payload) => fromBinary(StreamIncompleteWorkflowsResponseSchema, payload));
    const stored = await Promise.all(decoded.map(async (d) => (await client.getWorkflowExecution({ executionId: d.execution!.executionId })).execution!));
    payloads.forEach((payload, i) => {
      const want = toBinary(StreamIncompleteWorkflowsResponseSchema, create(StreamIncompleteWorkflowsResponseSchema, { execution: stored[i] }));
      expect(payload.toString("hex")).toBe(Buffer.from(want).toString("hex"));
    });
  });

  it("reads one batch at a time, each once, and one more only when rows are left after the last", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, dataset(3 * BATCH + 5, 8, INCOMPLETE));
    let inFlight = 0;
    let maxInFlight = 0;
    let reads = 0;
    const batchRead = /order by started_at, execution_id/i;
    const mine = (q: { sql?: string; bindings?: unknown[] }) => q.bindings?.includes(tenant) === true && batchRead.test(q.sql ?? "");
    const onQuery = (q: { sql: string; bindings?: unknown[] }) => {
      if (!mine(q)) return;
      reads++;
      maxInFlight = Math.max(maxInFlight, ++inFlight);
    };
    const onDone = (_: unknown, q: { sql: string; bindings?: unknown[] }) => {
      if (mine(q)) inFlight--;
    };
    t.knex.on("query", onQuery).on("query-response", onDone).on("query-error", onDone);
    try {
      expect(await readAll(tenant)).toHaveLength(3 * BATCH + 5);
      expect([reads, maxInFlight]).toEqual([4, 1]);
      reads = 0;
      // Exactly full batches: each read sees whether a row follows it, so no empty read ends the stream.
      const full = newTenant();
      await seedExecutions(t.knex, full, dataset(2 * BATCH, 9, INCOMPLETE));
      const onFull = (q: { sql: string; bindings?: unknown[] }) => {
        if (q.bindings?.includes(full) && batchRead.test(q.sql)) reads++;
      };
      t.knex.on("query", onFull);
      try {
        expect(await readAll(full)).toHaveLength(2 * BATCH);
        expect(reads).toBe(2);
      } finally {
        t.knex.off("query", onFull);
      }
    } finally {
      t.knex.off("query", onQuery).off("query-response", onDone).off("query-error", onDone);
    }
  });

  it("reads each batch with a statement that sends its first row before reading its last: one window pass, no sort after it", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, dataset(2 * BATCH + 5, 10, INCOMPLETE));
    const statements: { sql: string; bindings: unknown[] }[] = [];
    const onQuery = (q: { sql: string; bindings?: unknown[] }) => {
      if (q.bindings?.includes(tenant) && /order by started_at, execution_id/i.test(q.sql)) statements.push({ sql: q.sql, bindings: q.bindings });
    };
    t.knex.on("query", onQuery);
    try {
      expect(await readAll(tenant)).toHaveLength(2 * BATCH + 5);
    } finally {
      t.knex.off("query", onQuery);
    }
    expect(statements).toHaveLength(3);
    // The batch after the first (with its keyset), as the stream sent it: $n placeholders, in order.
    const { sql, bindings } = statements[1]!;
    const plan = await t.knex.raw<{ rows: { "QUERY PLAN": string }[] }>(`EXPLAIN (COSTS OFF) ${sql.replace(/\$\d+/g, "?")}`, bindings as never);
    const nodes = plan.rows.map((r) => r["QUERY PLAN"]);
    // A sort above the window would copy every row of the batch once more and
    // hold the first back until the last was read; so would a window over the
    // whole batch (count(*) OVER ()), as a second WindowAgg.
    expect(nodes[0]).toMatch(/^Subquery Scan on b/);
    expect(nodes.filter((n) => /WindowAgg/.test(n))).toHaveLength(1);
    expect(nodes.filter((n) => /Sort/.test(n) && !/Index/.test(n))).toEqual([]);
  });
});
