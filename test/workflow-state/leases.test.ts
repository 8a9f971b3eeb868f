import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  ClaimIncompleteWorkflowsRequestSchema,
  type WorkflowExecution,
  WorkflowExecutionSchema,
  WorkflowStatus,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName } from "../support/backend.js";
import { type Protocol, workflowClient } from "../support/clients.js";
import { codeOf, errorOf, invalidArgumentOf, violatedFields } from "../support/errors.js";
import { insertLargeIncomplete, seedExecutions, type Row } from "../support/executions.js";
import { envelope, openWireStream } from "../support/grpc-wire.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// ClaimIncompleteWorkflows, RenewLeases, ReleaseLeases and the fenced
// SaveWorkflowExecution on one server (the test's backend). Several servers on
// one PostgreSQL database: test/failures/claims.postgres.test.ts.

const BATCH = 10;
const LEASE = { seconds: 60n, nanos: 0 };
const SHORT = { seconds: 5n, nanos: 0 };

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ streamBatchSize: BATCH });
});
afterAll(async () => {
  await t.close();
});

type Client = ReturnType<typeof workflowClient>;

async function claimAll(client: Client, owner: string, extra: { workflowName?: string; maxCount?: number; leaseDuration?: typeof LEASE } = {}): Promise<WorkflowExecution[]> {
  const out: WorkflowExecution[] = [];
  for await (const m of client.claimIncompleteWorkflows({ owner, leaseDuration: LEASE, ...extra })) out.push(m.execution!);
  return out;
}

/** `n` executions a..., every third terminal, started one second apart in reverse id order. */
function rows(n: number, prefix = "e"): Row[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}-${String(i).padStart(4, "0")}`,
    workflow: i % 2 === 0 ? "even" : "odd",
    status: i % 3 === 2 ? "COMPLETED" : i % 3 === 1 ? "BLOCKED" : "RUNNING",
    startedUs: (n - i) * 1_000_000,
  }));
}

/** Moves an execution's lease into the past, as if its owner had stopped renewing it (test database role, no RLS). */
async function expire(tenant: string, executionId: string): Promise<void> {
  await t.knex.raw("UPDATE execution_leases SET expire_time = now() - interval '1 second' WHERE tenant_id = ? AND execution_id = ?", [tenant, executionId]);
}

const leaseLostInfo = (err: ConnectError) => err.findDetails(ErrorInfoSchema)[0];

describe(`ClaimIncompleteWorkflows on ${backendName}`, () => {
  it("claims every incomplete execution without a live lease, oldest started_at first, each with a lease from one sequence", async () => {
    const tenant = newTenant();
    const seeded = rows(35);
    await seedExecutions(t.knex, tenant, seeded);
    const client = workflowClient(t.baseUrl, tenant);
    const before = Date.now();
    const claimed = await claimAll(client, "replica-a");
    const incomplete = seeded.filter((r) => r.status !== "COMPLETED").sort((a, b) => a.startedUs - b.startedUs);
    expect(claimed.map((e) => e.executionId)).toEqual(incomplete.map((r) => r.id));
    const tokens = new Set<bigint>();
    for (const e of claimed) {
      expect(e.lease?.owner).toBe("replica-a");
      expect(e.lease!.fencingToken).toBeGreaterThanOrEqual(1_000_000_000_000n);
      tokens.add(e.lease!.fencingToken);
      const expiresMs = Number(e.lease!.expireTime!.seconds) * 1000;
      // Server clock: within a minute of ours, about 60 s from the claim.
      expect(expiresMs).toBeGreaterThan(before + 60_000 - 30_000);
      expect(expiresMs).toBeLessThan(Date.now() + 60_000 + 30_000);
    }
    expect(tokens.size).toBe(claimed.length);
    // Leased now: nothing left for another owner.
    expect(await claimAll(client, "replica-b")).toEqual([]);
    // Get, List and Stream show the lease; claiming changed no etag.
    const got = (await client.getWorkflowExecution({ executionId: claimed[0]!.executionId })).execution!;
    expect(toBinary(WorkflowExecutionSchema, got)).toEqual(toBinary(WorkflowExecutionSchema, claimed[0]!));
    const listed = (await client.listWorkflowExecutions({ pageSize: 1000 })).executions;
    expect(listed.filter((e) => e.lease !== undefined).map((e) => e.executionId).sort()).toEqual(incomplete.map((r) => r.id).sort());
    for await (const m of client.streamIncompleteWorkflows({})) expect(m.execution?.lease?.owner).toBe("replica-a");
  });

  it.each<[Protocol, boolean]>([
    ["grpc", true],
    ["grpc-web", true],
    ["connect", true],
    ["connect", false],
  ])("sends the same executions with their leases over %s (binary: %s)", async (protocol, binary) => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, rows(4));
    const client = workflowClient(t.baseUrl, tenant, protocol, binary);
    const claimed = await claimAll(client, `owner-${protocol}`);
    expect(claimed.length).toBe(3);
    for (const e of claimed) {
      const got = (await workflowClient(t.baseUrl, tenant).getWorkflowExecution({ executionId: e.executionId })).execution!;
      expect(toBinary(WorkflowExecutionSchema, e)).toEqual(toBinary(WorkflowExecutionSchema, got));
    }
  });

  it("takes the workflow filter and max_count, and leaves the rest to the next claim", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, rows(30));
    const client = workflowClient(t.baseUrl, tenant);
    const even = await claimAll(client, "a", { workflowName: "even", maxCount: 4 });
    expect(even.length).toBe(4);
    expect(even.every((e) => e.workflowName === "even")).toBe(true);
    const more = await claimAll(client, "b", { maxCount: 13 });
    expect(more.length).toBe(13);
    const rest = await claimAll(client, "c");
    const all = [...even, ...more, ...rest].map((e) => e.executionId);
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(20);
  });

  it("claims an execution again once its lease expired, with a greater fencing token", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, rows(1));
    const client = workflowClient(t.baseUrl, tenant);
    const [first] = await claimAll(client, "a");
    await expire(tenant, first!.executionId);
    const [second] = await claimAll(client, "b");
    expect(second?.executionId).toBe(first!.executionId);
    expect(second!.lease!.owner).toBe("b");
    expect(second!.lease!.fencingToken).toBeGreaterThan(first!.lease!.fencingToken);
  });

  it("gives disjoint sets to claimers running at once, whose union is every claimable execution", async () => {
    const tenant = newTenant();
    const seeded = rows(600);
    await seedExecutions(t.knex, tenant, seeded);
    const client = workflowClient(t.baseUrl, tenant);
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => claimAll(client, `claimer-${i}`)));
    const all = results.flat().map((e) => e.executionId);
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(seeded.filter((r) => r.status !== "COMPLETED").length);
  });

  it("releases the leases of executions it claimed and never sent when the client goes away", async () => {
    const tenant = newTenant();
    // 256 KB each, several times the client's flow-control window: the server blocks writing the first.
    await insertLargeIncomplete(t.knex, tenant, 10, 256 * 1024);
    const session = http2.connect(t.baseUrl);
    session.on("error", () => {});
    try {
      const request = create(ClaimIncompleteWorkflowsRequestSchema, { owner: "quitter", leaseDuration: LEASE });
      const call = openWireStream(session, {
        path: "/orchestration.state.v1.WorkflowStateService/ClaimIncompleteWorkflows",
        headers: { "x-tenant-id": tenant, "grpc-accept-encoding": "identity" },
        body: envelope(toBinary(ClaimIncompleteWorkflowsRequestSchema, request)),
      });
      await call.response;
      const heldBy = async (owner: string) =>
        (await t.knex.raw<{ rows: unknown[] }>("SELECT 1 FROM execution_leases WHERE tenant_id = ? AND owner = ?", [tenant, owner])).rows.length;
      // Its first batch is claimed (more than the one message the server is writing).
      await vi.waitFor(async () => expect(await heldBy("quitter")).toBeGreaterThan(1), { timeout: 5_000 });
      call.stream.close(http2.constants.NGHTTP2_CANCEL);
      // The leases of the rows never handed over are released once the stream ended on the server.
      await vi.waitFor(async () => expect(await heldBy("quitter")).toBeLessThanOrEqual(1), { timeout: 5_000, interval: 20 });
      const kept = await heldBy("quitter");
      const rest = await claimAll(workflowClient(t.baseUrl, tenant), "next", { maxCount: 100 });
      expect(rest.length + kept).toBe(10);
    } finally {
      session.destroy();
    }
  });

  it("refuses a missing or bad owner, lease_duration and max_count, naming them", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const drain = async (req: Parameters<Client["claimIncompleteWorkflows"]>[0]) => {
      for await (const _ of client.claimIncompleteWorkflows(req));
    };
    expect(violatedFields(await invalidArgumentOf(drain({})))).toEqual(["owner", "lease_duration"]);
    expect(violatedFields(await invalidArgumentOf(drain({ owner: "x".repeat(201), leaseDuration: LEASE })))).toEqual(["owner"]);
    expect(violatedFields(await invalidArgumentOf(drain({ owner: "a", leaseDuration: { seconds: 4n, nanos: 999_999_999 } })))).toEqual(["lease_duration"]);
    expect(violatedFields(await invalidArgumentOf(drain({ owner: "a", leaseDuration: { seconds: 3601n, nanos: 0 } })))).toEqual(["lease_duration"]);
    expect(violatedFields(await invalidArgumentOf(drain({ owner: "a", leaseDuration: LEASE, maxCount: -1 })))).toEqual(["max_count"]);
    expect(await codeOf(drain({ owner: "a", leaseDuration: SHORT }))).toBe("ok");
    expect(await codeOf(drain({ owner: "a", leaseDuration: { seconds: 3600n, nanos: 0 } }))).toBe("ok");
  });
});

describe(`RenewLeases and ReleaseLeases on ${backendName}`, () => {
  it("renews the leases still held and answers, per execution, those lost", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, rows(6));
    const client = workflowClient(t.baseUrl, tenant);
    const held = await claimAll(client, "a", { leaseDuration: SHORT });
    expect(held.length).toBe(4);
    const [kept, stolen, released, done] = held as [WorkflowExecution, WorkflowExecution, WorkflowExecution, WorkflowExecution];
    // stolen: expired and claimed by b; released: a released it; done: saved COMPLETED.
    await expire(tenant, stolen.executionId);
    expect((await claimAll(client, "b")).map((e) => e.executionId)).toEqual([stolen.executionId]);
    const rel = await client.releaseLeases({ leases: [{ executionId: released.executionId, fencingToken: released.lease!.fencingToken }] });
    expect(rel.releasedCount).toBe(1n);
    await client.saveWorkflowExecution({
      fencingToken: done.lease!.fencingToken,
      execution: { executionId: done.executionId, workflowName: done.workflowName, status: WorkflowStatus.COMPLETED },
    });

    const refs = held.map((e) => ({ executionId: e.executionId, fencingToken: e.lease!.fencingToken }));
    const res = await client.renewLeases({ leases: refs, leaseDuration: { seconds: 600n, nanos: 0 } });
    expect(res.renewals.map((r) => [r.executionId, r.fencingToken, r.renewed])).toEqual(refs.map((r) => [r.executionId, r.fencingToken, r.executionId === kept.executionId]));
    const renewed = res.renewals[0]!;
    expect(Number(renewed.expireTime!.seconds)).toBeGreaterThan(Number(kept.lease!.expireTime!.seconds) + 500);
    expect(res.renewals.slice(1).every((r) => r.expireTime === undefined)).toBe(true);
    // Get shows the renewed lease; the renewal changed no etag.
    const got = (await client.getWorkflowExecution({ executionId: kept.executionId })).execution!;
    expect(got.lease?.expireTime).toEqual(renewed.expireTime);
    expect(got.etag).toBe(kept.etag);
    // Released: no lease shown, claimable at once; done: no lease.
    expect((await client.getWorkflowExecution({ executionId: released.executionId })).execution!.lease).toBeUndefined();
    expect((await client.getWorkflowExecution({ executionId: done.executionId })).execution!.lease).toBeUndefined();
    expect((await claimAll(client, "c")).map((e) => e.executionId)).toEqual([released.executionId]);
    // Releasing again, or a lease lost, changes nothing.
    expect((await client.releaseLeases({ leases: refs })).releasedCount).toBe(1n); // only `kept` was still a's
    expect((await client.getWorkflowExecution({ executionId: stolen.executionId })).execution!.lease?.owner).toBe("b");
  });

  it("renews a lease past its expiry that nobody claimed meanwhile (its token is still current)", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, rows(1));
    const client = workflowClient(t.baseUrl, tenant);
    const [e] = await claimAll(client, "a");
    await expire(tenant, e!.executionId);
    const res = await client.renewLeases({ leases: [{ executionId: e!.executionId, fencingToken: e!.lease!.fencingToken }], leaseDuration: LEASE });
    expect(res.renewals[0]!.renewed).toBe(true);
    expect(await claimAll(client, "b")).toEqual([]);
  });

  it("refuses empty, oversized and duplicate lease lists and bad durations, naming the field", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const lease = (i: number) => ({ executionId: `e-${i}`, fencingToken: 1_000_000_000_000n + BigInt(i) });
    expect(violatedFields(await invalidArgumentOf(client.renewLeases({ leaseDuration: LEASE })))).toEqual(["leases"]);
    expect(violatedFields(await invalidArgumentOf(client.renewLeases({ leases: [lease(1)] })))).toEqual(["lease_duration"]);
    expect(violatedFields(await invalidArgumentOf(client.releaseLeases({})))).toEqual(["leases"]);
    const tooMany = Array.from({ length: 1001 }, (_, i) => lease(i));
    expect(violatedFields(await invalidArgumentOf(client.renewLeases({ leases: tooMany, leaseDuration: LEASE })))).toEqual(["leases"]);
    expect(violatedFields(await invalidArgumentOf(client.releaseLeases({ leases: tooMany })))).toEqual(["leases"]);
    expect(violatedFields(await invalidArgumentOf(client.releaseLeases({ leases: [lease(1), lease(1)] })))).toEqual(["leases[1].execution_id"]);
    expect(violatedFields(await invalidArgumentOf(client.releaseLeases({ leases: [{ executionId: "x" }] })))).toEqual(["leases[0].fencing_token"]);
    // 1,000 leases of 100 four-byte characters each: more than 128 KiB, still accepted.
    const large = Array.from({ length: 1000 }, (_, i) => ({ executionId: `${i}`.padStart(4, "0") + "😀".repeat(48), fencingToken: 1n }));
    const res = await client.renewLeases({ leases: large, leaseDuration: LEASE });
    expect(res.renewals.length).toBe(1000);
    expect(res.renewals.every((r) => !r.renewed)).toBe(true);
  });
});

describe(`a fenced SaveWorkflowExecution on ${backendName}`, () => {
  it("writes while the lease is current, keeps the lease, and ends it with a terminal status", async () => {
    const tenant = newTenant();
    await seedExecutions(t.knex, tenant, rows(1));
    const client = workflowClient(t.baseUrl, tenant);
    const [e] = await claimAll(client, "a");
    const saved = (await client.saveWorkflowExecution({
      fencingToken: e!.lease!.fencingToken,
      etag: e!.etag,
      execution: { executionId: e!.executionId, workflowName: e!.workflowName, status: WorkflowStatus.RUNNING, errorMessage: "step 2" },
    })).execution!;
    expect(saved.lease).toEqual(e!.lease);
    expect(BigInt(saved.etag)).toBeGreaterThan(BigInt(e!.etag));
    // An etag mismatch with a current lease is ABORTED, not a lost lease.
    const stale = await errorOf(client.saveWorkflowExecution({
      fencingToken: e!.lease!.fencingToken,
      etag: e!.etag,
      execution: { executionId: e!.executionId, workflowName: e!.workflowName, status: WorkflowStatus.RUNNING },
    }));
    expect(stale.code).toBe(Code.Aborted);
    expect(leaseLostInfo(stale)).toBeUndefined();
    // An unfenced save keeps the lease.
    const unfenced = (await client.saveWorkflowExecution({ execution: { executionId: e!.executionId, workflowName: "w", status: WorkflowStatus.BLOCKED } })).execution!;
    expect(unfenced.lease).toEqual(e!.lease);
    const done = (await client.saveWorkflowExecution({
      fencingToken: e!.lease!.fencingToken,
      execution: { executionId: e!.executionId, workflowName: "w", status: WorkflowStatus.FAILED },
    })).execution!;
    expect(done.lease).toBeUndefined();
    // Ended: the token no longer writes.
    const after = await errorOf(client.saveWorkflowExecution({
      fencingToken: e!.lease!.fencingToken,
      execution: { executionId: e!.executionId, workflowName: "w", status: WorkflowStatus.RUNNING },
    }));
    expect(after.code).toBe(Code.FailedPrecondition);
  });

  it("never creates an execution, and a token of no lease is lost", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    const err = await errorOf(client.saveWorkflowExecution({ fencingToken: 1_000_000_000_000n, execution: { executionId: "nope", workflowName: "w", status: WorkflowStatus.RUNNING } }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(leaseLostInfo(err)?.reason).toBe("LEASE_LOST");
    expect(await codeOf(client.getWorkflowExecution({ executionId: "nope" }))).toBe(Code.NotFound);
    expect(violatedFields(await invalidArgumentOf(client.saveWorkflowExecution({ fencingToken: -1n, execution: { executionId: "x", workflowName: "w", status: WorkflowStatus.RUNNING } })))).toEqual(["fencing_token"]);
  });

  // The Done-when line: real 5-second leases, no clock tricks.
  it.each([
    ["claimed by another owner", false],
    ["claimed by another owner after a delete and recreate", true],
  ])("after the lease expired and was %s, the old owner's save gets FAILED_PRECONDITION (LEASE_LOST) and the stored execution is the new owner's, byte for byte", { timeout: 60_000 }, async (_name, recreate) => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    const base = { executionId: "order-7", workflowName: "fulfil" };
    await client.saveWorkflowExecution({ execution: { ...base, status: WorkflowStatus.PENDING } });
    const [old] = await claimAll(client, "replica-old", { leaseDuration: SHORT });
    expect(old?.lease?.owner).toBe("replica-old");
    if (recreate) {
      // Finished and deleted by someone else, then started again under the same id.
      await client.saveWorkflowExecution({ execution: { ...base, status: WorkflowStatus.CANCELLED, completedAt: { seconds: 1_000_000_000n, nanos: 0 } } });
      expect((await client.deleteWorkflowExecutions({ completedBefore: { seconds: 2_000_000_000n, nanos: 0 } })).deletedCount).toBe(1n);
      await client.saveWorkflowExecution({ execution: { ...base, status: WorkflowStatus.PENDING } });
    } else {
      // Nobody else may claim it while the lease lives.
      expect(await claimAll(client, "replica-new")).toEqual([]);
    }
    // Wait for the old lease to expire (server clock), then the new owner claims and saves.
    const expiresMs = Number(old!.lease!.expireTime!.seconds) * 1000 + old!.lease!.expireTime!.nanos / 1e6;
    let claimed: WorkflowExecution[] = [];
    for (let i = 0; i < 200 && claimed.length === 0; i++) {
      if (recreate || Date.now() > expiresMs - 2_000) claimed = await claimAll(client, "replica-new");
      if (claimed.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    const [mine] = claimed;
    expect(mine?.lease?.owner).toBe("replica-new");
    expect(mine!.lease!.fencingToken).toBeGreaterThan(old!.lease!.fencingToken);
    if (recreate) expect(BigInt(mine!.etag)).toBeGreaterThan(BigInt(old!.etag));
    const ours = (await client.saveWorkflowExecution({
      fencingToken: mine!.lease!.fencingToken,
      execution: { ...base, status: WorkflowStatus.RUNNING, errorMessage: "new owner's step" },
    })).execution!;

    // The old owner wakes up and saves with its token (and its etag): lost.
    for (const etag of ["", old!.etag]) {
      const err = await errorOf(client.saveWorkflowExecution({
        fencingToken: old!.lease!.fencingToken,
        etag,
        execution: { ...base, status: WorkflowStatus.COMPLETED, errorMessage: "old owner's step" },
      }));
      expect(err.code).toBe(Code.FailedPrecondition);
      const info = leaseLostInfo(err);
      expect(info?.reason).toBe("LEASE_LOST");
      expect(info?.domain).toBe("orchestration.state.v1");
      expect(info?.metadata.execution_id).toBe("order-7");
    }
    // Its renewal answers lost too.
    const renewal = await client.renewLeases({ leases: [{ executionId: "order-7", fencingToken: old!.lease!.fencingToken }], leaseDuration: LEASE });
    expect(renewal.renewals[0]!.renewed).toBe(false);
    const stored = (await client.getWorkflowExecution({ executionId: "order-7" })).execution!;
    expect(Buffer.from(toBinary(WorkflowExecutionSchema, stored)).equals(Buffer.from(toBinary(WorkflowExecutionSchema, ours)))).toBe(true);
  });
});

describe(`etags on ${backendName}`, () => {
  it("never repeat for the same execution, also across delete and recreate", async () => {
    const client = workflowClient(t.baseUrl, newTenant());
    const base = { executionId: "again", workflowName: "w" };
    const seen = new Set<string>();
    for (let round = 0; round < 3; round++) {
      const first = (await client.saveWorkflowExecution({ execution: { ...base, status: WorkflowStatus.RUNNING } })).execution!;
      const second = (await client.saveWorkflowExecution({ etag: first.etag, execution: { ...base, status: WorkflowStatus.COMPLETED, completedAt: { seconds: 1_000_000_000n, nanos: 0 } } })).execution!;
      for (const etag of [first.etag, second.etag]) {
        expect(seen.has(etag)).toBe(false);
        seen.add(etag);
      }
      await client.deleteWorkflowExecutions({ completedBefore: { seconds: 2_000_000_000n, nanos: 0 } });
      // An etag of the deleted execution never matches the recreated one.
      const recreated = (await client.saveWorkflowExecution({ execution: { ...base, status: WorkflowStatus.PENDING } })).execution!;
      expect(await codeOf(client.saveWorkflowExecution({ etag: first.etag, execution: { ...base, status: WorkflowStatus.RUNNING } }))).toBe(Code.Aborted);
      expect(seen.has(recreated.etag)).toBe(false);
      seen.add(recreated.etag);
      await client.saveWorkflowExecution({ etag: recreated.etag, execution: { ...base, status: WorkflowStatus.CANCELLED, completedAt: { seconds: 1_000_000_000n, nanos: 0 } } });
      await client.deleteWorkflowExecutions({ completedBefore: { seconds: 2_000_000_000n, nanos: 0 } });
    }
  });
});
