import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { backendName } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { invalidArgumentOf, violatedFields } from "../support/errors.js";
import { type DbStatus, INCOMPLETE, type Row as ExecutionRow, seedExecutions, TERMINAL, ts } from "../support/executions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

const DELETE_BATCH = 7;
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ deleteBatchSize: DELETE_BATCH });
});
afterAll(async () => {
  await t.close();
});

/** A row as these tests seed it: completedUs is always given, null for incomplete rows. */
interface Row extends ExecutionRow {
  completedUs: number | null;
}

/** The cutoff most tests delete before: BASE + 1,000 s. */
const CUTOFF = 1_000_000_000;

/**
 * `n` rows cycling through every status and three workflows. Terminal rows
 * complete around the cutoff: well before, 1 µs before, exactly on it, 1 µs
 * after and well after. Incomplete rows started long before the cutoff.
 */
function dataset(n: number, prefix = "ex"): Row[] {
  const completions = [CUTOFF - 500_000_000, CUTOFF - 1, CUTOFF, CUTOFF + 1, CUTOFF + 500_000_000, CUTOFF - 3_600_000_000];
  const statuses: DbStatus[] = ["COMPLETED", "RUNNING", "FAILED", "PENDING", "CANCELLED", "BLOCKED", "COMPLETED"];
  return Array.from({ length: n }, (_, i) => {
    const status = statuses[i % statuses.length]!;
    const completedUs = TERMINAL.includes(status) ? completions[i % completions.length]! : null;
    return {
      id: `${prefix}-${String(i).padStart(4, "0")}`,
      workflow: ["ingest", "review", "publish"][i % 3]!,
      status,
      startedUs: (completedUs ?? 0) - 60_000_000 - i,
      completedUs,
    };
  });
}

/** Whether the service must delete a row for a cutoff and filters. */
function deletable(r: Row, cutoff: number, statuses: DbStatus[] = TERMINAL, workflow = ""): boolean {
  return statuses.includes(r.status) && r.completedUs !== null && r.completedUs < cutoff && (workflow === "" || r.workflow === workflow);
}

/** Every execution id the tenant still has, read through ListWorkflowExecutions. */
async function remainingIds(tenant: string): Promise<string[]> {
  const client = workflowClient(t.baseUrl, tenant);
  const out: string[] = [];
  let pageToken = "";
  do {
    const res = await client.listWorkflowExecutions({ pageSize: 1000, pageToken });
    out.push(...res.executions.map((e) => e.executionId));
    pageToken = res.nextPageToken;
  } while (pageToken !== "");
  return out.sort();
}

const sortedIds = (rows: readonly Row[]) => rows.map((r) => r.id).sort();

describe(`DeleteWorkflowExecutions on ${backendName}`, () => {
  it("deletes exactly the terminal executions completed strictly before completed_before, and returns how many", async () => {
    const tenant = newTenant();
    const rows = dataset(84);
    await seedExecutions(t.knex, tenant, rows);
    const doomed = rows.filter((r) => deletable(r, CUTOFF));
    const kept = rows.filter((r) => !deletable(r, CUTOFF));
    // The dataset has terminal executions exactly on the cutoff and 1 µs on each side of it.
    expect(kept.some((r) => r.completedUs === CUTOFF)).toBe(true);
    expect(kept.some((r) => r.completedUs === CUTOFF + 1)).toBe(true);
    expect(doomed.some((r) => r.completedUs === CUTOFF - 1)).toBe(true);

    const client = workflowClient(t.baseUrl, tenant);
    const res = await client.deleteWorkflowExecutions({ completedBefore: ts(CUTOFF) });
    expect(res.deletedCount).toBe(BigInt(doomed.length));
    expect(await remainingIds(tenant)).toEqual(sortedIds(kept));
    for (const r of doomed.slice(0, 3)) {
      const err = await client.getWorkflowExecution({ executionId: r.id }).catch((e: unknown) => e);
      expect(ConnectError.from(err).code).toBe(Code.NotFound);
    }
    const onCutoff = kept.find((r) => r.completedUs === CUTOFF)!;
    expect((await client.getWorkflowExecution({ executionId: onCutoff.id })).execution?.completedAt).toMatchObject(ts(CUTOFF));

    // Calling again finds nothing more to delete.
    expect((await client.deleteWorkflowExecutions({ completedBefore: ts(CUTOFF) })).deletedCount).toBe(0n);
    expect(await remainingIds(tenant)).toEqual(sortedIds(kept));
  });

  it("never deletes PENDING, RUNNING or BLOCKED executions, however old, whatever the cutoff", async () => {
    const tenant = newTenant();
    const ancient = -40 * 365 * 86_400 * 1_000_000;
    const rows: Row[] = INCOMPLETE.flatMap((status, i) => [
      { id: `old-${status}`, workflow: "w", status, startedUs: ancient + i, completedUs: null },
      { id: `new-${status}`, workflow: "w", status, startedUs: CUTOFF + i, completedUs: null },
    ]);
    await seedExecutions(t.knex, tenant, [...rows, { id: "done", workflow: "w", status: "COMPLETED", startedUs: ancient, completedUs: ancient + 1 }]);
    const client = workflowClient(t.baseUrl, tenant);
    // A finished execution resumed through the RPC is incomplete again.
    await client.saveWorkflowExecution({ execution: { executionId: "resumed", workflowName: "w", status: WorkflowStatus.FAILED, startedAt: ts(0), completedAt: ts(1) } });
    await client.saveWorkflowExecution({ execution: { executionId: "resumed", workflowName: "w", status: WorkflowStatus.RUNNING } });

    const latest = { seconds: 253_402_300_799n, nanos: 999_999_999 };
    const res = await client.deleteWorkflowExecutions({ completedBefore: latest });
    expect(res.deletedCount).toBe(1n);
    expect(await remainingIds(tenant)).toEqual([...sortedIds(rows), "resumed"].sort());
    // Also when the filters name the workflow of the incomplete executions.
    expect((await client.deleteWorkflowExecutions({ completedBefore: latest, workflowName: "w" })).deletedCount).toBe(0n);
    expect(await remainingIds(tenant)).toHaveLength(rows.length + 1);
  });

  it.each<[string, WorkflowStatus[], DbStatus[]]>([
    ["FAILED only", [WorkflowStatus.FAILED], ["FAILED"]],
    ["COMPLETED and CANCELLED", [WorkflowStatus.COMPLETED, WorkflowStatus.CANCELLED], ["COMPLETED", "CANCELLED"]],
    ["every terminal status, one repeated", [WorkflowStatus.CANCELLED, WorkflowStatus.FAILED, WorkflowStatus.COMPLETED, WorkflowStatus.FAILED], TERMINAL],
  ])("statuses %s deletes only executions in those statuses", async (_name, statuses, dbStatuses) => {
    const tenant = newTenant();
    const rows = dataset(84);
    await seedExecutions(t.knex, tenant, rows);
    const res = await workflowClient(t.baseUrl, tenant).deleteWorkflowExecutions({ completedBefore: ts(CUTOFF), statuses });
    const doomed = rows.filter((r) => deletable(r, CUTOFF, dbStatuses));
    expect(doomed.length).toBeGreaterThan(0);
    expect(res.deletedCount).toBe(BigInt(doomed.length));
    expect(await remainingIds(tenant)).toEqual(sortedIds(rows.filter((r) => !deletable(r, CUTOFF, dbStatuses))));
  });

  it("workflow_name deletes only that workflow's executions, and combines with statuses and the cutoff", async () => {
    const tenant = newTenant();
    const rows = dataset(84);
    await seedExecutions(t.knex, tenant, rows);
    const client = workflowClient(t.baseUrl, tenant);

    const first = await client.deleteWorkflowExecutions({ completedBefore: ts(CUTOFF), workflowName: "review", statuses: [WorkflowStatus.COMPLETED] });
    let left = rows.filter((r) => !deletable(r, CUTOFF, ["COMPLETED"], "review"));
    expect(first.deletedCount).toBe(BigInt(rows.length - left.length));
    expect(first.deletedCount).toBeGreaterThan(0n);
    expect(await remainingIds(tenant)).toEqual(sortedIds(left));

    const second = await client.deleteWorkflowExecutions({ completedBefore: ts(CUTOFF + 1_000_000_000), workflowName: "publish" });
    const before = left.length;
    left = left.filter((r) => !deletable(r, CUTOFF + 1_000_000_000, TERMINAL, "publish"));
    expect(second.deletedCount).toBe(BigInt(before - left.length));
    expect(await remainingIds(tenant)).toEqual(sortedIds(left));

    expect((await client.deleteWorkflowExecutions({ completedBefore: ts(CUTOFF * 10), workflowName: "nope" })).deletedCount).toBe(0n);
    expect(await remainingIds(tenant)).toEqual(sortedIds(left));
  });

  it("uses completed_at as saved through the RPC, including the one the server sets", async () => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant);
    // Ten years before BASE: surely before the time of the saves below.
    const old = -10 * 365 * 86_400 * 1_000_000;
    await client.saveWorkflowExecution({ execution: { executionId: "given", workflowName: "w", status: WorkflowStatus.COMPLETED, completedAt: ts(old - 1) } });
    await client.saveWorkflowExecution({ execution: { executionId: "given-late", workflowName: "w", status: WorkflowStatus.FAILED, completedAt: ts(old) } });
    // No completed_at given: the server uses the time of the save.
    const saved = await client.saveWorkflowExecution({ execution: { executionId: "now", workflowName: "w", status: WorkflowStatus.CANCELLED } });
    const savedAt = saved.execution!.completedAt!;

    expect((await client.deleteWorkflowExecutions({ completedBefore: ts(old) })).deletedCount).toBe(1n);
    expect(await remainingIds(tenant)).toEqual(["given-late", "now"]);
    // Exactly at the server-set completion time: not strictly before, kept.
    expect((await client.deleteWorkflowExecutions({ completedBefore: savedAt, statuses: [WorkflowStatus.CANCELLED] })).deletedCount).toBe(0n);
    const later = { seconds: savedAt.seconds + 1n, nanos: 0 };
    expect((await client.deleteWorkflowExecutions({ completedBefore: later, statuses: [WorkflowStatus.CANCELLED] })).deletedCount).toBe(1n);
    expect(await remainingIds(tenant)).toEqual(["given-late"]);
  });

  it("leaves other tenants' executions alone, even with the same ids", async () => {
    const tenant = newTenant();
    const other = newTenant();
    const rows = dataset(42);
    await seedExecutions(t.knex, tenant, rows);
    await seedExecutions(t.knex, other, rows);
    const res = await workflowClient(t.baseUrl, tenant).deleteWorkflowExecutions({ completedBefore: ts(CUTOFF * 10) });
    expect(res.deletedCount).toBe(BigInt(rows.filter((r) => TERMINAL.includes(r.status)).length));
    expect(await remainingIds(other)).toEqual(sortedIds(rows));
  });

  it.each([50, 49, 7, 6, 1])(`deletes %i executions in batches of ${DELETE_BATCH} and counts all of them`, async (n) => {
    const tenant = newTenant();
    const doomed: Row[] = Array.from({ length: n }, (_, i) => ({
      id: `d-${String(i).padStart(3, "0")}`,
      workflow: "w",
      status: TERMINAL[i % 3]!,
      startedUs: i,
      completedUs: CUTOFF - 1_000 - i,
    }));
    const kept: Row[] = [
      { id: "k-late", workflow: "w", status: "COMPLETED", startedUs: 0, completedUs: CUTOFF },
      { id: "k-running", workflow: "w", status: "RUNNING", startedUs: 0, completedUs: null },
      { id: "k-other-name", workflow: "x", status: "FAILED", startedUs: 0, completedUs: 0 },
    ];
    await seedExecutions(t.knex, tenant, [...doomed, ...kept]);
    const res = await workflowClient(t.baseUrl, tenant).deleteWorkflowExecutions({ completedBefore: ts(CUTOFF), workflowName: "w" });
    expect(res.deletedCount).toBe(BigInt(n));
    expect(await remainingIds(tenant)).toEqual(sortedIds(kept));
  });
});

describe(`DeleteWorkflowExecutions bad input on ${backendName}`, () => {
  it.each<[string, WorkflowStatus[], string]>([
    ["PENDING", [WorkflowStatus.PENDING], "statuses[0]"],
    ["RUNNING", [WorkflowStatus.RUNNING], "statuses[0]"],
    ["BLOCKED", [WorkflowStatus.BLOCKED], "statuses[0]"],
    ["RUNNING after COMPLETED", [WorkflowStatus.COMPLETED, WorkflowStatus.RUNNING], "statuses[1]"],
    ["UNSPECIFIED", [WorkflowStatus.UNSPECIFIED], "statuses[0]"],
    ["an unknown status number", [42 as WorkflowStatus], "statuses[0]"],
  ])("statuses naming %s answers INVALID_ARGUMENT naming the entry, and deletes nothing", async (_name, statuses, field) => {
    const tenant = newTenant();
    const rows = dataset(30);
    await seedExecutions(t.knex, tenant, rows);
    const err = await invalidArgumentOf(workflowClient(t.baseUrl, tenant).deleteWorkflowExecutions({ completedBefore: ts(CUTOFF * 10), statuses }));
    expect(err.rawMessage).toContain(field);
    expect(violatedFields(err)).toContain(field);
    expect(await remainingIds(tenant)).toEqual(sortedIds(rows));
  });

  it("a missing completed_before answers INVALID_ARGUMENT naming it, and deletes nothing", async () => {
    const tenant = newTenant();
    const rows = dataset(30);
    await seedExecutions(t.knex, tenant, rows);
    const client = workflowClient(t.baseUrl, tenant);
    for (const req of [{}, { workflowName: "review", statuses: [WorkflowStatus.COMPLETED] }]) {
      const err = await invalidArgumentOf(client.deleteWorkflowExecutions(req));
      expect(err.rawMessage).toContain("completed_before");
      expect(violatedFields(err)).toContain("completed_before");
    }
    expect(await remainingIds(tenant)).toEqual(sortedIds(rows));
  });

  it("a completed_before outside the Timestamp range answers INVALID_ARGUMENT naming it", async () => {
    const tenant = newTenant();
    const rows = dataset(10);
    await seedExecutions(t.knex, tenant, rows);
    const err = await invalidArgumentOf(
      workflowClient(t.baseUrl, tenant).deleteWorkflowExecutions({ completedBefore: { seconds: 253_402_300_800n, nanos: 0 } }),
    );
    expect(violatedFields(err)).toContain("completed_before");
    expect(await remainingIds(tenant)).toEqual(sortedIds(rows));
  });
});
