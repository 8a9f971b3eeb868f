// How ClaimIncompleteWorkflows sizes its claim batches
// (src/services/workflow-state/claim-source.ts), against a fake claim and a
// fake clock: batches grow while the client takes them quickly, so that a
// fast claimer waits for few commits, and go back to STREAM_BATCH_SIZE for a
// slow one, so that leases do not age unsent in the server.
import { describe, expect, it } from "vitest";
import type { ExecutionRow } from "../../src/db/models/workflow-execution.js";
import type { ClaimInput } from "../../src/db/queries/execution-leases.js";
import { CLAIM_BATCH_MAX_ROWS, claimBatches } from "../../src/services/workflow-state/claim-source.js";
import type { BatchLimits, InTurn } from "../../src/streams/bounded-stream.js";

const LIMITS: BatchLimits = { rows: 100, bytes: 1_000_000 };
const inTurn: InTurn = (work) => work();

/** The stream side: a slot counting what is held, rows of 10 bytes, and a clock the test moves. */
function stream() {
  const s = { held: 0, clock: 0 };
  return {
    s,
    side: {
      slot: { hold: (bytes: number) => void (s.held += bytes), release: (bytes: number) => void (s.held -= bytes) },
      bytes: () => 10,
      now: () => s.clock,
    },
  };
}

/** A table of `total` claimable executions, and the claims made of it. */
function table(total: number, failAt = -1) {
  const calls: { input: ClaimInput; limits: BatchLimits }[] = [];
  let next = 0;
  const claim = async (input: ClaimInput, limits: BatchLimits) => {
    calls.push({ input, limits });
    if (calls.length - 1 === failAt) throw new Error("connection lost");
    const rows = Array.from({ length: Math.min(limits.rows, total - next) }, (_, k) => ({
      started_at: `2026-01-01T00:00:00.${String(next + k).padStart(6, "0")}Z`,
      execution_id: `e-${next + k}`,
    })) as ExecutionRow[];
    next += rows.length;
    return { rows, more: next < total };
  };
  return { calls, claim };
}

describe("claim batches", () => {
  it("double from STREAM_BATCH_SIZE up to the maximum while the client takes each batch within a tenth of the lease", async () => {
    const { calls, claim } = table(10_000);
    const { s, side } = stream();
    const batches = claimBatches({ owner: "o", leaseMs: 60_000, workflowName: "", maxCount: 0 }, claim, side);
    const sizes: number[] = [];
    for (let i = 0; i < 7; i++) {
      sizes.push((await batches.read(LIMITS, inTurn)).rows.length);
      s.clock += 5_999;
    }
    // From the second read on, the next batch is claimed ahead with the size of the read's own.
    expect(sizes).toEqual([100, 200, 200, 400, 800, CLAIM_BATCH_MAX_ROWS, CLAIM_BATCH_MAX_ROWS]);
    expect(calls.map((c) => c.limits.rows)).toEqual([100, 200, 200, 400, 800, CLAIM_BATCH_MAX_ROWS, CLAIM_BATCH_MAX_ROWS, CLAIM_BATCH_MAX_ROWS]);
    // The byte budget is the stream's, whatever the row count; while a batch
    // is claimed ahead, two are held, and each gets half of it.
    expect(calls.map((c) => c.limits.bytes)).toEqual([LIMITS.bytes, ...Array(7).fill(LIMITS.bytes / 2)]);
    // Each batch starts after the last row claimed before it.
    expect(calls[1]!.input.after).toEqual(["2026-01-01T00:00:00.000099Z", "e-99"]);
  });

  it("ask for no more rows than the byte budget holds, going by the stored size of the rows claimed last", async () => {
    // Rows past the budget would be locked and unlocked unclaimed, a wasted
    // row lock (and WAL record) each, taken again by the next batch.
    const { calls, claim } = table(10_000);
    const { s, side } = stream();
    const batches = claimBatches({ owner: "o", leaseMs: 60_000, workflowName: "", maxCount: 0 }, claim, { ...side, bytes: () => 1_000 });
    for (let i = 0; i < 4; i++) {
      await batches.read({ rows: 100, bytes: 300_000 }, inTurn);
      s.clock += 10;
    }
    // From the second on, batches are claimed ahead: half the budget each, 150 rows of 1,000 bytes.
    expect(calls.map((c) => c.limits.rows)).toEqual([100, 150, 150, 150, 150]);
  });

  it("hold no more than the byte budget with a batch claimed ahead: each batch gets half, and one heavier than half has nothing claimed after it", async () => {
    const { calls, claim } = table(10_000);
    const { s, side } = stream();
    let rowBytes = 1_000;
    const batches = claimBatches({ owner: "o", leaseMs: 60_000, workflowName: "", maxCount: 0 }, claim, { ...side, bytes: () => rowBytes });
    await batches.read({ rows: 100, bytes: 300_000 }, inTurn);
    s.clock += 10;
    await batches.read({ rows: 100, bytes: 300_000 }, inTurn);
    await new Promise((resolve) => setImmediate(resolve));
    // The batch handed over and the one claimed ahead: 150 rows of 1,000 bytes each.
    expect(calls.slice(1).map((c) => c.limits)).toEqual([{ rows: 150, bytes: 150_000 }, { rows: 150, bytes: 150_000 }]);
    expect(s.held).toBe(150_000);
    // Rows claimed from now on weigh more than half the budget (the fake
    // claim ignores the bytes): the batch they make is sent alone.
    rowBytes = 200_000;
    s.clock += 10;
    await batches.read({ rows: 100, bytes: 300_000 }, inTurn);
    s.clock += 10;
    await batches.read({ rows: 100, bytes: 300_000 }, inTurn);
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls.length).toBe(4);
    expect(s.held).toBe(0);
  });

  it("go back to STREAM_BATCH_SIZE once the client took a batch slower than a tenth of the lease", async () => {
    const { calls, claim } = table(10_000);
    const { s, side } = stream();
    const batches = claimBatches({ owner: "o", leaseMs: 60_000, workflowName: "", maxCount: 0 }, claim, side);
    const sizes: number[] = [];
    for (const took of [10, 10, 6_000, 10, 10]) {
      sizes.push((await batches.read(LIMITS, inTurn)).rows.length);
      s.clock += took;
    }
    // The fourth read comes 6 s after the claim of the batch it hands over
    // (claimed ahead, 400 rows): it claims nothing ahead, and the fifth, whose
    // batch's leases were claimed 6 s before, claims STREAM_BATCH_SIZE.
    expect(sizes).toEqual([100, 200, 200, 400, 100]);
    expect(calls.map((c) => c.limits.rows)).toEqual([100, 200, 200, 400, 100]);
  });

  it("never claim more than max_count in all, and end there", async () => {
    const { calls, claim } = table(10_000);
    const batches = claimBatches({ owner: "o", leaseMs: 60_000, workflowName: "w", maxCount: 250 }, claim, stream().side);
    const sizes: number[] = [];
    for (let more = true; more; ) {
      const batch = await batches.read(LIMITS, inTurn);
      sizes.push(batch.rows.length);
      more = batch.more;
    }
    expect(sizes).toEqual([100, 150]);
    expect(calls.every((c) => c.input.workflowName === "w" && c.input.owner === "o")).toBe(true);
  });

  it("end when the table has no claimable execution left", async () => {
    const { claim } = table(150);
    const batches = claimBatches({ owner: "o", leaseMs: 60_000, workflowName: "", maxCount: 0 }, claim, stream().side);
    expect((await batches.read(LIMITS, inTurn)).more).toBe(true);
    const last = await batches.read(LIMITS, inTurn);
    expect([last.rows.length, last.more]).toEqual([50, false]);
  });

  it("count a batch claimed ahead as held until the stream takes it, and hand it to close when the stream ends first", async () => {
    const { calls, claim } = table(10_000);
    const { s, side } = stream();
    const batches = claimBatches({ owner: "o", leaseMs: 60_000, workflowName: "", maxCount: 0 }, claim, side);
    await batches.read(LIMITS, inTurn);
    const second = await batches.read(LIMITS, inTurn);
    await new Promise((resolve) => setImmediate(resolve));
    // The third batch is claimed: 200 rows of 10 bytes held.
    expect(calls.length).toBe(3);
    expect(s.held).toBe(2_000);
    const unsent = await batches.close();
    expect(unsent.map((r) => r.execution_id)).toEqual(Array.from({ length: 200 }, (_, k) => `e-${300 + k}`));
    expect(second.rows[0]!.execution_id).toBe("e-100");
    expect(s.held).toBe(0);
    // Nothing is claimed once closed.
    expect(calls.length).toBe(3);
  });

  it("claim again at the next read when the claim ahead failed", async () => {
    const { calls, claim } = table(10_000, 2);
    const { side } = stream();
    const batches = claimBatches({ owner: "o", leaseMs: 60_000, workflowName: "", maxCount: 0 }, claim, side);
    await batches.read(LIMITS, inTurn);
    await batches.read(LIMITS, inTurn);
    const third = await batches.read(LIMITS, inTurn);
    expect(third.rows[0]!.execution_id).toBe("e-300");
    expect(calls[3]!.input.after).toEqual(["2026-01-01T00:00:00.000299Z", "e-299"]);
  });
});
