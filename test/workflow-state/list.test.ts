import * as http2 from "node:http2";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ListWorkflowExecutionsRequestSchema,
  ListWorkflowExecutionsResponseSchema,
  type WorkflowExecution,
  WorkflowStatus,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName } from "../support/backend.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { connectClient, workflowClient } from "../support/clients.js";
import { decision } from "../support/decisions.js";
import { invalidArgumentOf, violatedFields } from "../support/errors.js";
import { prng, seedExecutions, startedUs, STATUSES, ts, type Row } from "../support/executions.js";
import { envelope, wireCall } from "../support/grpc-wire.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

type ListRequest = MessageInitShape<typeof ListWorkflowExecutionsRequestSchema>;

/**
 * `n` rows over three workflows and every status. Start times come from a few
 * dozen values, some 1 µs apart, so that many rows tie on started_at and the
 * execution_id tie-break decides their order; ids are not in insertion order.
 */
function dataset(n: number, seedValue: number, prefix = "ex"): Row[] {
  const rand = prng(seedValue);
  const ids = new Set<string>();
  const rows: Row[] = [];
  while (rows.length < n) {
    // Fixed-length lowercase ids: their order is the same in every collation.
    const id = `${prefix}-${Math.floor(rand() * 36 ** 6).toString(36).padStart(6, "0")}`;
    if (ids.has(id)) continue;
    ids.add(id);
    const slot = Math.floor(rand() * 40);
    rows.push({
      id,
      workflow: ["ingest", "review", "publish"][Math.floor(rand() * 3)]!,
      status: STATUSES[Math.floor(rand() * STATUSES.length)]!,
      // Slots are whole seconds from 10 s on, plus 0 or 1 µs: ties, and
      // neighbours 1 µs apart.
      startedUs: (10 + slot) * 1_000_000 + (rand() < 0.3 ? 1 : 0),
    });
  }
  return rows;
}

/** The listing order: newest started_at first, then execution_id descending. */
function newestFirst(a: Row, b: Row): number {
  if (a.startedUs !== b.startedUs) return b.startedUs - a.startedUs;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

const ids = (rows: readonly { id: string }[]) => rows.map((r) => r.id);
const executionIds = (es: readonly WorkflowExecution[]) => es.map((e) => e.executionId);

/** Walks every page of a listing; `between` runs after each page but the last. */
async function walk(tenant: string, req: ListRequest, between: (page: WorkflowExecution[]) => Promise<void> = async () => {}) {
  const client = workflowClient(t.baseUrl, tenant);
  const all: WorkflowExecution[] = [];
  const pageSizes: number[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 2_000; pages++) {
    const res = await client.listWorkflowExecutions({ ...req, pageToken });
    expect(res.executions.length).toBeLessThanOrEqual(Math.min(req.pageSize || 50, 1_000));
    all.push(...res.executions);
    pageSizes.push(res.executions.length);
    if (res.nextPageToken === "") return { all, pageSizes };
    pageToken = res.nextPageToken;
    await between(res.executions);
  }
  throw new Error("the walk did not end");
}

describe(`ListWorkflowExecutions order and page size on ${backendName}`, () => {
  it("lists newest started_at first, ties broken by execution_id descending", async () => {
    const tenant = newTenant();
    const rows = dataset(120, 1);
    await seedExecutions(t.knex, tenant, rows);
    const res = await workflowClient(t.baseUrl, tenant).listWorkflowExecutions({ pageSize: 1000 });
    expect(executionIds(res.executions)).toEqual(ids([...rows].sort(newestFirst)));
    expect(res.nextPageToken).toBe("");
    // The returned times are the stored ones, to the microsecond.
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const e of res.executions) expect(startedUs(e)).toBe(byId.get(e.executionId)!.startedUs);
  });

  it("orders executions saved through the RPC by their started_at, not by when they were saved", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    // Saved oldest-last; two share a start time (ordered b before a: id descending).
    const saves: [string, number][] = [["late", 3_000_000], ["a", 2_000_000], ["b", 2_000_000], ["early", 1_000_000], ["micro", 2_000_001]];
    for (const [id, us] of saves) {
      await client.saveWorkflowExecution({ execution: { executionId: id, workflowName: "w", status: WorkflowStatus.RUNNING, startedAt: ts(us) } });
    }
    const res = await client.listWorkflowExecutions({});
    expect(executionIds(res.executions)).toEqual(["late", "micro", "b", "a", "early"]);
  });

  it("returns 50 executions when page_size is 0, and at most 1,000 when page_size is larger", async () => {
    const tenant = newTenant();
    const rows = dataset(1_100, 2);
    await seedExecutions(t.knex, tenant, rows);
    const expected = ids([...rows].sort(newestFirst));
    const client = workflowClient(t.baseUrl, tenant);

    const byDefault = await client.listWorkflowExecutions({});
    expect(executionIds(byDefault.executions)).toEqual(expected.slice(0, 50));
    expect(byDefault.nextPageToken).not.toBe("");

    for (const pageSize of [1_001, 5_000, 2_147_483_647]) {
      const capped = await client.listWorkflowExecutions({ pageSize });
      expect(executionIds(capped.executions)).toEqual(expected.slice(0, 1_000));
      expect(capped.nextPageToken).not.toBe("");
      const rest = await client.listWorkflowExecutions({ pageSize, pageToken: capped.nextPageToken });
      expect(executionIds(rest.executions)).toEqual(expected.slice(1_000));
      expect(rest.nextPageToken).toBe("");
    }
  });

  it.each([-1, -50, -2_147_483_648])("a negative page_size (%i) answers INVALID_ARGUMENT naming page_size", async (pageSize) => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, dataset(3, 3));
    const err = await invalidArgumentOf(workflowClient(t.baseUrl, tenant).listWorkflowExecutions({ pageSize }));
    expect(err.rawMessage).toContain("page_size");
    expect(violatedFields(err)).toContain("page_size");
  });

  it("an empty listing has no executions and no next_page_token", async () => {
    const res = await workflowClient(t.baseUrl, newTenant()).listWorkflowExecutions({ pageSize: 10 });
    expect(res.executions).toEqual([]);
    expect(res.nextPageToken).toBe("");
  });

  it("the last page has an empty next_page_token, also when it is exactly full", async () => {
    const tenant = newTenant();
    const rows = dataset(20, 4);
    await seedExecutions(t.knex, tenant, rows);
    const client = workflowClient(t.baseUrl, tenant);
    const first = await client.listWorkflowExecutions({ pageSize: 10 });
    expect(first.executions).toHaveLength(10);
    expect(first.nextPageToken).not.toBe("");
    const second = await client.listWorkflowExecutions({ pageSize: 10, pageToken: first.nextPageToken });
    expect(second.executions).toHaveLength(10);
    expect(second.nextPageToken).toBe("");
    const whole = await client.listWorkflowExecutions({ pageSize: 20 });
    expect(whole.executions).toHaveLength(20);
    expect(whole.nextPageToken).toBe("");
    expect(executionIds([...first.executions, ...second.executions])).toEqual(executionIds(whole.executions));
  });
});

describe(`ListWorkflowExecutions paging on ${backendName}`, () => {
  it("walks 237 executions, many with identical started_at, 10 per page: each exactly once, in order", async () => {
    const tenant = newTenant();
    const rows = dataset(237, 5);
    // Ties across page boundaries are what the execution_id tie-break is for.
    expect(new Set(rows.map((r) => r.startedUs)).size).toBeLessThan(100);
    await seedExecutions(t.knex, tenant, rows);
    const { all, pageSizes } = await walk(tenant, { pageSize: 10 });
    expect(executionIds(all)).toEqual(ids([...rows].sort(newestFirst)));
    expect(pageSizes).toEqual([...Array<number>(23).fill(10), 7]);
  });

  it("walks a page of size 1 at a time through rows that all share one started_at", async () => {
    const tenant = newTenant();
    const rows: Row[] = ["m", "b", "a", "z", "ab", "a0", "0", "zz"].map((id) => ({ id, workflow: "w", status: "RUNNING", startedUs: 7 }));
    await seedExecutions(t.knex, tenant, rows);
    const { all, pageSizes } = await walk(tenant, { pageSize: 1 });
    expect(executionIds(all)).toEqual(ids([...rows].sort(newestFirst)));
    expect(pageSizes).toEqual(Array<number>(8).fill(1));
  });

  it("never skips or repeats an unchanged execution when executions are saved or deleted between pages", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    const original = dataset(100, 6, "orig");
    await seedExecutions(t.knex, tenant, original);
    const known = new Set(ids(original));
    const deleted = new Set<string>();
    // Executions saved during the walk, and whether they are ahead of the cursor
    // (so the walk must return them) or behind it (so it must not).
    const added: { row: Row; ahead: boolean }[] = [];
    let n = 0;
    const { all } = await walk(tenant, { pageSize: 10 }, async (page) => {
      n++;
      const last = page[page.length - 1]!;
      const cursor: Row = { id: last.executionId, workflow: last.workflowName, status: "RUNNING", startedUs: startedUs(last) };
      const fresh: { row: Row; ahead: boolean }[] = [
        { row: { id: `new-${n}-newest`, workflow: "w", status: "RUNNING", startedUs: 60_000_000 + n }, ahead: false },
        // Same started_at as the cursor, id just above it (listed before it) and just below it.
        { row: { id: `${cursor.id}x`, workflow: "w", status: "PENDING", startedUs: cursor.startedUs }, ahead: false },
        { row: { id: cursor.id.slice(0, -1), workflow: "w", status: "BLOCKED", startedUs: cursor.startedUs }, ahead: true },
        { row: { id: `new-${n}-oldest`, workflow: "w", status: "FAILED", startedUs: 5_000_000 - n }, ahead: true },
      ];
      for (const f of fresh) {
        if (known.has(f.row.id)) continue;
        known.add(f.row.id);
        await client.saveWorkflowExecution({
          execution: { executionId: f.row.id, workflowName: f.row.workflow, status: WorkflowStatus[f.row.status], startedAt: ts(f.row.startedUs) },
        });
        added.push(f);
      }
      // Every third page, delete the next original execution not listed yet.
      if (n % 3 === 0) {
        const next = [...original].sort(newestFirst).find((o) => newestFirst(o, cursor) > 0 && !deleted.has(o.id));
        if (next !== undefined) {
          await t.knex("workflow_executions").where({ tenant_id: tenant, execution_id: next.id }).delete();
          deleted.add(next.id);
        }
      }
    });
    const got = executionIds(all);
    expect(deleted.size).toBeGreaterThan(1);
    expect(added.filter((a) => a.ahead).length).toBeGreaterThan(10);
    expect(added.filter((a) => !a.ahead).length).toBeGreaterThan(10);
    // No execution twice.
    expect(new Set(got).size).toBe(got.length);
    // Every original execution still there, exactly once; none of the deleted ones.
    const survivors = ids(original.filter((o) => !deleted.has(o.id))).sort();
    expect(got.filter((id) => survivors.includes(id)).sort()).toEqual(survivors);
    expect(got.filter((id) => deleted.has(id))).toEqual([]);
    // Executions saved ahead of the cursor are returned, those behind it are not.
    for (const a of added) expect(got.includes(a.row.id), `saved ${a.row.id}`).toBe(a.ahead);
    // And the whole walk is in listing order.
    const rowOf = new Map([...original, ...added.map((a) => a.row)].map((r) => [r.id, r]));
    const walked = got.map((id) => rowOf.get(id)!);
    expect(ids(walked)).toEqual(ids([...walked].sort(newestFirst)));
  });

  it("pages one by one through 100-character ids of escaped and non-ASCII characters, and the extreme start times", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    // Distinct start times, so that the order does not depend on the collation.
    const saves: [string, { seconds: bigint; nanos: number }][] = [
      ["\u0001".repeat(100), ts(4_000_000)],
      ["\u{1F600}".repeat(100), ts(3_000_000)],
      ['"\\'.repeat(50), ts(2_000_000)],
      ["\u001f".repeat(99) + "x", ts(1_000_000)],
      ["year-1", { seconds: -62_135_596_800n, nanos: 0 }],
      ["year-9999", { seconds: 253_402_300_799n, nanos: 999_999_000 }],
    ];
    for (const [executionId, startedAt] of saves) {
      await client.saveWorkflowExecution({ execution: { executionId, workflowName: "w", status: WorkflowStatus.RUNNING, startedAt } });
    }
    const { all, pageSizes } = await walk(tenant, { pageSize: 1 });
    expect(executionIds(all)).toEqual([saves[5]![0], saves[0]![0], saves[1]![0], saves[2]![0], saves[3]![0], saves[4]![0]]);
    expect(pageSizes).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it("accepts a different page_size from one page to the next", async () => {
    const tenant = newTenant();
    const rows = dataset(60, 7);
    await seedExecutions(t.knex, tenant, rows);
    const client = workflowClient(t.baseUrl, tenant);
    const got: string[] = [];
    let pageToken = "";
    for (const pageSize of [5, 17, 3, 100]) {
      const res = await client.listWorkflowExecutions({ pageSize, pageToken, workflowName: "review" });
      got.push(...executionIds(res.executions));
      pageToken = res.nextPageToken;
      if (pageToken === "") break;
    }
    expect(pageToken).toBe("");
    expect(got).toEqual(ids(rows.filter((r) => r.workflow === "review").sort(newestFirst)));
  });
});

describe(`ListWorkflowExecutions filters on ${backendName}`, () => {
  const rows = dataset(300, 8);
  // Boundaries that are themselves start times of some rows, to tell inclusive from exclusive.
  const after = 22_000_000;
  const before = 41_000_001;
  let tenant: string;
  beforeAll(async () => {
    tenant = newTenant();
    await seedExecutions(t.knex, tenant, rows);
    // Another tenant with the same ids, names and times must never show up.
    await seedExecutions(t.knex, newTenant(), rows.map((r) => ({ ...r, status: "RUNNING" })));
  });

  const cases: [string, ListRequest, (r: Row) => boolean][] = [
    ["workflow_name", { workflowName: "review" }, (r) => r.workflow === "review"],
    ["one status", { statuses: [WorkflowStatus.BLOCKED] }, (r) => r.status === "BLOCKED"],
    ["several statuses", { statuses: [WorkflowStatus.RUNNING, WorkflowStatus.FAILED, WorkflowStatus.PENDING] }, (r) => ["RUNNING", "FAILED", "PENDING"].includes(r.status)],
    ["started_after (inclusive)", { startedAfter: ts(after) }, (r) => r.startedUs >= after],
    ["started_before (exclusive)", { startedBefore: ts(before) }, (r) => r.startedUs < before],
    ["started_after and started_before", { startedAfter: ts(after), startedBefore: ts(before) }, (r) => r.startedUs >= after && r.startedUs < before],
    [
      "every filter at once",
      { workflowName: "publish", statuses: [WorkflowStatus.COMPLETED, WorkflowStatus.RUNNING], startedAfter: ts(after), startedBefore: ts(before) },
      (r) => r.workflow === "publish" && ["COMPLETED", "RUNNING"].includes(r.status) && r.startedUs >= after && r.startedUs < before,
    ],
    ["a workflow_name no execution has", { workflowName: "nope" }, () => false],
    ["started_after later than started_before", { startedAfter: ts(before), startedBefore: ts(after) }, () => false],
  ];

  it("the dataset has rows exactly on both time boundaries", () => {
    expect(rows.some((r) => r.startedUs === after)).toBe(true);
    expect(rows.some((r) => r.startedUs === before)).toBe(true);
  });

  it.each(cases)("filtered by %s, walks exactly the matching executions, newest first, 7 per page", async (_name, req, matches) => {
    const { all } = await walk(tenant, { ...req, pageSize: 7 });
    const expected = ids(rows.filter(matches).sort(newestFirst));
    expect(executionIds(all)).toEqual(expected);
    // The returned executions really have the filtered fields.
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const e of all) {
      const r = byId.get(e.executionId)!;
      expect([e.workflowName, WorkflowStatus[e.status], startedUs(e)]).toEqual([r.workflow, r.status, r.startedUs]);
    }
  });
});

describe(`ListWorkflowExecutions page_token errors on ${backendName}`, () => {
  it.each<[string, ListRequest]>([
    ["another workflow_name", { workflowName: "publish" }],
    ["no workflow_name", {}],
    ["other statuses", { workflowName: "review", statuses: [WorkflowStatus.RUNNING] }],
    ["a started_after", { workflowName: "review", startedAfter: ts(0) }],
    ["a started_before", { workflowName: "review", startedBefore: ts(100_000_000) }],
  ])("a page_token reused with %s answers INVALID_ARGUMENT naming page_token", async (_name, other) => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, dataset(40, 9));
    const client = workflowClient(t.baseUrl, tenant);
    const first = await client.listWorkflowExecutions({ pageSize: 2, workflowName: "review" });
    expect(first.nextPageToken).not.toBe("");
    const err = await invalidArgumentOf(client.listWorkflowExecutions({ ...other, pageSize: 2, pageToken: first.nextPageToken }));
    expect(err.rawMessage).toContain("page_token");
    expect(violatedFields(err)).toContain("page_token");
    // With its own filters the token still works.
    const second = await client.listWorkflowExecutions({ pageSize: 2, workflowName: "review", pageToken: first.nextPageToken });
    expect(second.executions).toHaveLength(2);
  });

  it("a page_token with statuses keeps working when the same statuses are given again", async () => {
    const tenant = newTenant();
    const rows = dataset(60, 10);
    await seedExecutions(t.knex, tenant, rows);
    const req = { statuses: [WorkflowStatus.RUNNING, WorkflowStatus.CANCELLED], startedAfter: ts(5_000_000), pageSize: 4 };
    const { all } = await walk(tenant, req);
    expect(executionIds(all)).toEqual(ids(rows.filter((r) => ["RUNNING", "CANCELLED"].includes(r.status) && r.startedUs >= 5_000_000).sort(newestFirst)));
  });

  const garbage: [string, string][] = [
    ["not base64 at all", "!!! not a token !!!"],
    ["base64 of plain text", Buffer.from("hello").toString("base64url")],
    ["base64 of empty JSON", Buffer.from("{}").toString("base64url")],
    ["a forged keyset", Buffer.from(JSON.stringify({ k: ["2026-11-26 00:00:00+00", "x"], f: "forged" })).toString("base64url")],
    ["a keyset of the wrong length", Buffer.from(JSON.stringify({ k: ["x"], f: "y" })).toString("base64url")],
    ["over 1,000 characters", "A".repeat(1_001)],
  ];

  it.each(garbage)("a garbage page_token (%s) answers INVALID_ARGUMENT naming page_token", async (_name, pageToken) => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, dataset(5, 11));
    const err = await invalidArgumentOf(workflowClient(t.baseUrl, tenant).listWorkflowExecutions({ pageToken }));
    expect(err.rawMessage).toContain("page_token");
    expect(violatedFields(err)).toContain("page_token");
  });

  it("a page_token cut short answers INVALID_ARGUMENT naming page_token", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, dataset(30, 12));
    const client = workflowClient(t.baseUrl, tenant);
    const { nextPageToken } = await client.listWorkflowExecutions({ pageSize: 3 });
    for (const pageToken of [nextPageToken.slice(0, -6), nextPageToken.slice(0, 10), nextPageToken.slice(6)]) {
      const err = await invalidArgumentOf(client.listWorkflowExecutions({ pageSize: 3, pageToken }));
      expect(err.rawMessage).toContain("page_token");
      expect(violatedFields(err)).toContain("page_token");
    }
  });

  it("a page_token issued to another tenant answers INVALID_ARGUMENT naming page_token", async () => {
    const theirs = newTenant();
    const mine = newTenant();
    await seedExecutions(t.knex, theirs, dataset(30, 14));
    await seedExecutions(t.knex, mine, dataset(30, 15));
    const { nextPageToken } = await workflowClient(t.baseUrl, theirs).listWorkflowExecutions({ pageSize: 3 });
    expect(nextPageToken).not.toBe("");
    const err = await invalidArgumentOf(workflowClient(t.baseUrl, mine).listWorkflowExecutions({ pageSize: 3, pageToken: nextPageToken }));
    expect(violatedFields(err)).toContain("page_token");
  });

  it("a page_token issued by another listing (ListRoutingDecisions) answers INVALID_ARGUMENT naming page_token", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, dataset(30, 13));
    const audit = connectClient(RoutingAuditService, t.baseUrl, tenant);
    await audit.recordRoutingDecisions({ decisions: [decision(), decision(), decision()] });
    const { nextPageToken } = await audit.listRoutingDecisions({ pageSize: 1 });
    expect(nextPageToken).not.toBe("");
    const err = await invalidArgumentOf(workflowClient(t.baseUrl, tenant).listWorkflowExecutions({ pageSize: 3, pageToken: nextPageToken }));
    expect(err.rawMessage).toContain("page_token");
    expect(violatedFields(err)).toContain("page_token");
  });
});

describe(`ListWorkflowExecutions answers on the wire, on ${backendName}`, () => {
  it("over gRPC, a page is byte for byte the response built from the stored executions (the executions, then next_page_token)", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    for (let i = 0; i < 5; i++) {
      await client.saveWorkflowExecution({
        execution: {
          executionId: `wire-${i}`,
          workflowName: "wire",
          status: WorkflowStatus.RUNNING,
          startedAt: ts(i * 1_000_000),
          context: { i, nested: { list: [1, "two", null, true, { deep: i / 3 }] }, text: "é€😀" },
          labels: { team: "t", shard: String(i) },
          stepOutputs: { fetch: { kind: { case: "numberValue", value: i } } },
        },
      });
    }
    // The general path: a JSON client gets messages built by executionFromRow.
    const json = workflowClient(t.baseUrl, tenant, "connect", false);
    const session = http2.connect(t.baseUrl);
    try {
      let token = "";
      for (let page = 0; page < 3; page++) {
        const request = create(ListWorkflowExecutionsRequestSchema, { pageSize: 2, pageToken: token });
        const answer = await wireCall(session, {
          path: "/orchestration.state.v1.WorkflowStateService/ListWorkflowExecutions",
          headers: { [TENANT_HEADER]: tenant },
          body: envelope(toBinary(ListWorkflowExecutionsRequestSchema, request)),
        });
        expect(answer.trailers["grpc-status"]).toBe("0");
        const want = await json.listWorkflowExecutions({ pageSize: 2, pageToken: token });
        expect(answer.body.slice(10)).toBe(Buffer.from(toBinary(ListWorkflowExecutionsResponseSchema, want)).toString("hex"));
        token = want.nextPageToken;
      }
      expect(token).toBe("");
    } finally {
      session.close();
    }
  });
});
