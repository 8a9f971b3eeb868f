import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DurationSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RoutingDecision,
  RoutingAuditService,
  type SummarizeDecisionsOverTimeRequestSchema,
} from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { backendName } from "../support/backend.js";
import { connectClient } from "../support/clients.js";
import { at, decision, micros, T0 } from "../support/decisions.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// SummarizeDecisionsOverTime: the dashboard's trend of volume and success rate.

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

const audit = (tenant: string) => connectClient(RoutingAuditService, t.baseUrl, tenant);
type Request = MessageInitShape<typeof SummarizeDecisionsOverTimeRequestSchema>;
const seconds = (s: number) => create(DurationSchema, { seconds: BigInt(s) });
const usOf = (ts: { seconds: bigint; nanos: number }) => ts.seconds * 1_000_000n + BigInt(Math.floor(ts.nanos / 1000));

/** 200 decisions over about 33 minutes after T0, over agents, task types, outcomes and task durations. */
function dataset(): RoutingDecision[] {
  return Array.from({ length: 200 }, (_, i) =>
    decision({
      taskId: `task-${i}`,
      taskType: ["summarize", "classify"][i % 2],
      selectedAgent: `agent-${"abc"[i % 3]}`,
      success: i % 5 !== 0 && i % 7 !== 3,
      // Uneven spacing: some minutes hold many decisions, some none.
      routedAt: at(Math.floor((i * i) / 20), (i * 37) % 1_000_000),
      taskDuration: micros(((i * 7919) % 90_000) + 1),
    }),
  );
}

/** The buckets computed here from the decisions: what the RPC must answer. */
function expected(decisions: RoutingDecision[], afterUs: bigint, beforeUs: bigint, widthUs: bigint) {
  const byBucket = new Map<bigint, RoutingDecision[]>();
  for (const d of decisions) {
    const us = usOf(d.routedAt!);
    if (us < afterUs || us >= beforeUs) continue;
    const index = (us - afterUs) / widthUs;
    byBucket.set(index, [...(byBucket.get(index) ?? []), d]);
  }
  return [...byBucket.keys()]
    .sort((a, b) => (a < b ? -1 : 1))
    .map((index) => {
      const mine = byBucket.get(index)!;
      const ok = mine.filter((d) => d.success).length;
      const sum = mine.reduce((s, d) => s + usOf(d.taskDuration!), 0n);
      const n = BigInt(mine.length);
      const start = afterUs + index * widthUs;
      return {
        startUs: start,
        endUs: start + widthUs < beforeUs ? start + widthUs : beforeUs,
        total: n,
        successful: BigInt(ok),
        failed: n - BigInt(ok),
        successRate: ok / mine.length,
        averageUs: (2n * sum + n) / (2n * n), // rounded, halves up
      };
    });
}

async function summarize(tenant: string, req: Request) {
  const res = await audit(tenant).summarizeDecisionsOverTime(req);
  return res.buckets.map((b) => ({
    startUs: usOf(b.startTime!),
    endUs: usOf(b.endTime!),
    total: b.totalDecisions,
    successful: b.successfulDecisions,
    failed: b.failedDecisions,
    successRate: b.successRate,
    averageUs: usOf(b.averageTaskDuration!),
  }));
}

describe(`SummarizeDecisionsOverTime on ${backendName}`, () => {
  const tenant = newTenant();
  const data = dataset();
  beforeAll(async () => {
    await audit(tenant).recordRoutingDecisions({ decisions: data });
  });

  const T0us = T0 * 1_000_000n;
  it.each([
    ["minute buckets over the whole trail", {}, () => true, 0, 2_100, 60],
    ["uneven buckets whose last one is cut short by routed_before", {}, () => true, 30, 1_000, 7 * 60],
    ["one bucket", {}, () => true, 0, 2_100, 2_100],
    ["second buckets where most are empty", {}, () => true, 100, 400, 1],
    ["selected_agent", { selectedAgent: "agent-b" }, (d: RoutingDecision) => d.selectedAgent === "agent-b", 0, 2_100, 300],
    ["task_type", { taskType: "classify" }, (d: RoutingDecision) => d.taskType === "classify", 0, 2_100, 300],
    ["both filters", { selectedAgent: "agent-a", taskType: "summarize" }, (d: RoutingDecision) => d.selectedAgent === "agent-a" && d.taskType === "summarize", 0, 2_100, 300],
    ["a filter nothing matches", { selectedAgent: "nobody" }, () => false, 0, 2_100, 300],
  ] as [string, Request, (d: RoutingDecision) => boolean, number, number, number][])(
    "with %s matches the buckets computed from the decisions",
    async (_name, filters, matches, from, to, width) => {
      const got = await summarize(tenant, { ...filters, routedAfter: at(from), routedBefore: at(to), bucketWidth: seconds(width) });
      const want = expected(data.filter(matches), T0us + BigInt(from) * 1_000_000n, T0us + BigInt(to) * 1_000_000n, BigInt(width) * 1_000_000n);
      expect(got).toEqual(want);
      // Every case but the last has decisions to count.
      expect(want.length === 0).toBe(_name === "a filter nothing matches");
    },
  );

  it("counts a decision at routed_after in the first bucket, at a bucket's end in the next, and at routed_before in none", async () => {
    const own = newTenant();
    await audit(own).recordRoutingDecisions({
      decisions: [
        decision({ routedAt: at(0) }),
        decision({ routedAt: at(9, 999_999), success: false }),
        decision({ routedAt: at(10) }),
        decision({ routedAt: at(20) }),
        decision({ routedAt: at(-1, 999_999) }),
      ],
    });
    const got = await summarize(own, { routedAfter: at(0), routedBefore: at(20), bucketWidth: seconds(10) });
    expect(got.map((b) => [b.startUs - T0us, b.endUs - T0us, b.total, b.failed])).toEqual([
      [0n, 10_000_000n, 2n, 1n],
      [10_000_000n, 20_000_000n, 1n, 0n],
    ]);
  });

  it("truncates nanoseconds to the microsecond, as decisions are stored, and works before 1970", async () => {
    const own = newTenant();
    const epoch = (s: number, nanos = 0) => create(TimestampSchema, { seconds: BigInt(s), nanos });
    await audit(own).recordRoutingDecisions({
      decisions: [decision({ routedAt: epoch(-2, 500_000_000) }), decision({ routedAt: epoch(-1, 999) }), decision({ routedAt: epoch(0) })],
    });
    // Decisions at -1.5 s, -0.999999001 s (stored as -1 s) and 0 s. routed_after
    // -1.499999001 s is the microsecond -1.5 s: the first decision counts.
    const got = await audit(own).summarizeDecisionsOverTime({
      routedAfter: epoch(-2, 500_000_999),
      routedBefore: epoch(0, 200_000_000),
      bucketWidth: seconds(1),
    });
    expect(got.buckets.map((b) => [b.startTime!.seconds, b.startTime!.nanos, b.endTime!.seconds, b.endTime!.nanos, b.totalDecisions])).toEqual([
      [-2n, 500_000_000, -1n, 500_000_000, 2n],
      [-1n, 500_000_000, 0n, 200_000_000, 1n],
    ]);
  });

  it("never counts another tenant's decisions", async () => {
    const other = newTenant();
    const req = { routedAfter: at(0), routedBefore: at(2_100), bucketWidth: seconds(60) };
    expect((await audit(other).summarizeDecisionsOverTime(req)).buckets).toEqual([]);
    await audit(other).recordRoutingDecision({ decision: decision({ routedAt: at(5) }) });
    const mine = await summarize(tenant, req);
    expect(mine).toEqual(expected(data, T0us, T0us + 2_100_000_000n, 60_000_000n));
    expect((await summarize(other, req)).map((b) => b.total)).toEqual([1n]);
  });

  it("accepts exactly 1,000 buckets", async () => {
    const res = await audit(tenant).summarizeDecisionsOverTime({ routedAfter: at(0), routedBefore: at(1_000), bucketWidth: seconds(1) });
    expect(res.buckets.length).toBeGreaterThan(0);
    expect(res.buckets.every((b) => b.startTime!.seconds < T0 + 1_000n)).toBe(true);
  });

  it.each([
    ["a missing routed_after", { routedBefore: at(10), bucketWidth: seconds(1) }, "routed_after"],
    ["a missing routed_before", { routedAfter: at(0), bucketWidth: seconds(1) }, "routed_before"],
    ["a missing bucket_width", { routedAfter: at(0), routedBefore: at(10) }, "bucket_width"],
    ["routed_before equal to routed_after", { routedAfter: at(10), routedBefore: at(10), bucketWidth: seconds(1) }, "routed_before"],
    ["routed_before before routed_after", { routedAfter: at(10), routedBefore: at(0), bucketWidth: seconds(1) }, "routed_before"],
    ["a bucket_width under a second", { routedAfter: at(0), routedBefore: at(10), bucketWidth: { seconds: 0n, nanos: 999_999_999 } }, "bucket_width"],
    ["a bucket_width over 366 days", { routedAfter: at(0), routedBefore: at(10), bucketWidth: seconds(366 * 86_400 + 1) }, "bucket_width"],
    ["a negative bucket_width", { routedAfter: at(0), routedBefore: at(10), bucketWidth: seconds(-5) }, "bucket_width"],
    ["1,001 buckets", { routedAfter: at(0), routedBefore: at(1_000, 1), bucketWidth: seconds(1) }, "bucket_width"],
    ["a range of 10,000 years in second buckets", { routedAfter: { seconds: -62_135_596_800n }, routedBefore: { seconds: 253_402_300_799n }, bucketWidth: seconds(1) }, "bucket_width"],
    ["routed_after out of range", { routedAfter: { seconds: -62_135_596_801n }, routedBefore: at(10), bucketWidth: seconds(1) }, "routed_after"],
    ["a selected_agent over 200 characters", { routedAfter: at(0), routedBefore: at(10), bucketWidth: seconds(1), selectedAgent: "a".repeat(201) }, "selected_agent"],
    ["a NUL in task_type", { routedAfter: at(0), routedBefore: at(10), bucketWidth: seconds(1), taskType: "x\0" }, "task_type"],
  ] as [string, Request, string][])("%s answers INVALID_ARGUMENT naming %s", async (_name, req, field) => {
    const err = ConnectError.from(await audit(tenant).summarizeDecisionsOverTime(req).catch((e: unknown) => e));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(field);
  });
});
