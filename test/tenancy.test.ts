import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService } from "../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RetentionService } from "../gen/orchestration/state/v1/retention_service_pb.js";
import { RoutingAuditService } from "../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService, WorkflowStatus } from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName } from "./support/backend.js";
import { connectClient, workflowClient } from "./support/clients.js";
import { codeOf } from "./support/errors.js";
import { newTenant, startTestServer, type TestServer } from "./support/server.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

describe("the x-tenant-id header", () => {
  it.each([
    ["missing", undefined],
    ["empty", ""],
    ["not a UUID", "tenant-a"],
    ["two values", "7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10, 8c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10"],
  ])("%s answers INVALID_ARGUMENT naming the header", async (_name, header) => {
    const client = workflowClient(t.baseUrl, header);
    const err = ConnectError.from(await client.getWorkflowExecution({ executionId: "x" }).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("x-tenant-id");
  });

  it("is required by every service of the contract, implemented or not", async () => {
    const services = [WorkflowStateService, CircuitBreakerService, RoutingAuditService, StatisticsService, RetentionService];
    for (const service of services) {
      for (const method of service.methods) {
        if (method.methodKind !== "unary") continue;
        const client = connectClient(service, t.baseUrl, undefined) as unknown as Record<string, (req: object) => Promise<unknown>>;
        expect(await codeOf(client[method.localName]!({})), `${service.typeName}/${method.name}`).toBe(Code.InvalidArgument);
      }
    }
  });

  it("is accepted in upper case and names the same tenant", async () => {
    const tenant = newTenant();
    await workflowClient(t.baseUrl, tenant.toUpperCase()).saveWorkflowExecution({
      execution: { executionId: "e", workflowName: "w", status: WorkflowStatus.RUNNING },
    });
    const got = await workflowClient(t.baseUrl, tenant).getWorkflowExecution({ executionId: "e" });
    expect(got.execution?.executionId).toBe("e");
  });
});

describe(`tenant isolation of WorkflowStateService on ${backendName}`, () => {
  it("two tenants may use the same execution id; neither sees, lists, streams, overwrites or deletes the other's", async () => {
    const a = workflowClient(t.baseUrl, newTenant());
    const b = workflowClient(t.baseUrl, newTenant());
    const old = { seconds: 1_000_000_000n, nanos: 0 };
    const aFirst = await a.saveWorkflowExecution({ execution: { executionId: "shared", workflowName: "w", status: WorkflowStatus.RUNNING, errorMessage: "A's" } });
    await a.saveWorkflowExecution({ execution: { executionId: "a-done", workflowName: "w", status: WorkflowStatus.COMPLETED, completedAt: old } });
    await a.saveWorkflowExecution({ execution: { executionId: "a-only", workflowName: "w", status: WorkflowStatus.PENDING } });

    // B cannot read A's rows.
    expect(await codeOf(b.getWorkflowExecution({ executionId: "a-only" }))).toBe(Code.NotFound);
    expect((await b.listWorkflowExecutions({})).executions).toEqual([]);
    const streamed = [];
    for await (const m of b.streamIncompleteWorkflows({})) streamed.push(m);
    expect(streamed).toEqual([]);

    // B writes its own "shared": a separate execution, not an update of A's.
    const bShared = await b.saveWorkflowExecution({ execution: { executionId: "shared", workflowName: "w", status: WorkflowStatus.BLOCKED, errorMessage: "B's" } });
    // A new row: its etag is its first (never one of A's), and A's row keeps its own.
    const aShared = (await a.getWorkflowExecution({ executionId: "shared" })).execution!;
    expect(bShared.execution?.etag).not.toBe(aShared.etag);
    expect(aShared.etag).toBe(aFirst.execution?.etag);
    expect(bShared.execution?.createTime).not.toEqual(aShared.createTime);
    expect((await a.getWorkflowExecution({ executionId: "shared" })).execution?.errorMessage).toBe("A's");
    expect((await b.getWorkflowExecution({ executionId: "shared" })).execution?.errorMessage).toBe("B's");

    // B's etag-conditional write cannot reach A's row either.
    expect(await codeOf(b.saveWorkflowExecution({ etag: "1", execution: { executionId: "a-only", workflowName: "w", status: WorkflowStatus.FAILED } }))).toBe(Code.Aborted);

    // B's delete does not touch A's old completed execution.
    const deleted = await b.deleteWorkflowExecutions({ completedBefore: { seconds: 4_000_000_000n, nanos: 0 } });
    expect(deleted.deletedCount).toBe(0n);
    expect((await a.getWorkflowExecution({ executionId: "a-done" })).execution?.status).toBe(WorkflowStatus.COMPLETED);

    // A sees exactly its own three.
    const listed = (await a.listWorkflowExecutions({})).executions.map((e) => e.executionId).sort();
    expect(listed).toEqual(["a-done", "a-only", "shared"]);
  });

  it("a tenant never claims, renews, releases or saves with a lease of another's executions", async () => {
    const a = workflowClient(t.baseUrl, newTenant());
    const b = workflowClient(t.baseUrl, newTenant());
    await a.saveWorkflowExecution({ execution: { executionId: "job", workflowName: "w", status: WorkflowStatus.PENDING } });
    await b.saveWorkflowExecution({ execution: { executionId: "job", workflowName: "w", status: WorkflowStatus.PENDING } });
    const claim = async (client: typeof a, owner: string) => {
      const out = [];
      for await (const m of client.claimIncompleteWorkflows({ owner, leaseDuration: { seconds: 60n, nanos: 0 } })) out.push(m.execution!);
      return out;
    };
    const [aLease] = (await claim(a, "a-replica")).map((e) => e.lease!);
    expect(aLease?.owner).toBe("a-replica");
    // B's claim takes B's own "job", never A's (leased or not).
    const bClaimed = await claim(b, "b-replica");
    expect(bClaimed.map((e) => e.executionId)).toEqual(["job"]);
    expect(await claim(b, "b-other")).toEqual([]);
    // A's token means nothing in B's tenant: no renewal, no release, no fenced write.
    const held = [{ executionId: "job", fencingToken: aLease!.fencingToken }];
    expect((await b.renewLeases({ leases: held, leaseDuration: { seconds: 60n, nanos: 0 } })).renewals[0]!.renewed).toBe(false);
    expect((await b.releaseLeases({ leases: held })).releasedCount).toBe(0n);
    expect(await codeOf(b.saveWorkflowExecution({ fencingToken: aLease!.fencingToken, execution: { executionId: "job", workflowName: "w", status: WorkflowStatus.FAILED } }))).toBe(Code.FailedPrecondition);
    // A's lease and execution are untouched; B's token does not reach A's either.
    const aJob = (await a.getWorkflowExecution({ executionId: "job" })).execution!;
    expect(aJob.lease).toEqual(aLease);
    expect(aJob.status).toBe(WorkflowStatus.PENDING);
    const bHeld = [{ executionId: "job", fencingToken: bClaimed[0]!.lease!.fencingToken }];
    expect((await a.releaseLeases({ leases: bHeld })).releasedCount).toBe(0n);
    expect((await b.getWorkflowExecution({ executionId: "job" })).execution!.lease?.owner).toBe("b-replica");
  });
});
