import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { AgentStatistics } from "../../../gen/orchestration/state/v1/statistics_service_pb.js";
import { h, replace } from "../dom.js";
import { durationText, percent, timeText } from "../format.js";
import { field, fill, pagedTable, section, table, type View } from "./common.js";
import { chartLegend, trendChart } from "./trend-chart.js";

// StatisticsService's aggregates (top and underperforming agents, every
// agent) and the trend of RoutingAuditService's SummarizeDecisionsOverTime.

/** Ranges the trend offers: how far back, and the bucket width (both in seconds). */
const RANGES: { label: string; seconds: number; bucket: number }[] = [
  { label: "Last hour, 5-minute buckets", seconds: 3_600, bucket: 300 },
  { label: "Last 6 hours, 15-minute buckets", seconds: 6 * 3_600, bucket: 900 },
  { label: "Last 24 hours, hourly buckets", seconds: 86_400, bucket: 3_600 },
  { label: "Last 7 days, 6-hour buckets", seconds: 7 * 86_400, bucket: 6 * 3_600 },
  { label: "Last 30 days, daily buckets", seconds: 30 * 86_400, bucket: 86_400 },
];

/** A row of an agent's statistics; `full` adds the failed tasks and the last task's time. */
function statisticsRow(s: AgentStatistics, full = false): HTMLTableRowElement {
  return h(
    "tr",
    { "data-agent": s.agentKey },
    h("th", { scope: "row" }, s.agentKey),
    h("td", { class: "num" }, percent(s.successRate)),
    h("td", { class: "num" }, String(s.totalTasks)),
    full ? h("td", { class: "num" }, String(s.failedTasks)) : null,
    h("td", { class: "num" }, durationText(s.averageDuration)),
    full ? h("td", null, timeText(s.lastTaskTime)) : null,
  );
}

const RANKING_HEADERS = ["Agent", "Success rate", "Tasks", "Average duration"];
const STATISTICS_HEADERS = ["Agent", "Success rate", "Tasks", "Failed", "Average duration", "Last task"];

export const agentsView: View = (root, ctx) => {
  const trendArea = h("div");
  const top = h("div", { class: "table-wrap" });
  const under = h("div", { class: "table-wrap" });
  const all = h("div", { class: "table-wrap" });

  // Trend controls.
  const range = h("select", { name: "range" }, RANGES.map((r, i) => h("option", { value: i, selected: i === 2 }, r.label)));
  const agent = h("input", { name: "agent", type: "text", maxlength: 200, placeholder: "every agent", autocomplete: "off" });
  const trendForm = h(
    "form",
    { class: "filters", onsubmit: (e: Event) => { e.preventDefault(); void loadTrend(); } },
    field("Range", range),
    field("Agent", agent),
    h("button", { type: "submit" }, "Show trend"),
  );

  // Underperforming threshold.
  const threshold = h("input", { name: "threshold", type: "number", min: 1, max: 100, step: 1, value: 90, required: true });
  const underForm = h(
    "form",
    { class: "filters", onsubmit: (e: Event) => { e.preventDefault(); void loadUnder(); } },
    field("Success rate below (%)", threshold),
    h("button", { type: "submit" }, "Show"),
  );

  replace(
    root,
    h("h1", null, "Agents"),
    section("Success rate and volume over time", trendForm, trendArea),
    h("div", { class: "columns" },
      section("Top performing agents", top),
      section("Underperforming agents", underForm, under),
    ),
    section("Every agent", all),
  );

  async function loadTrend(): Promise<void> {
    const r = RANGES[Number(range.value)]!;
    const bucketMs = r.bucket * 1000;
    // Buckets on round times, covering the whole range: from the bucket that
    // holds its start to the end of the current one.
    const now = Date.now();
    const fromMs = Math.floor((now - r.seconds * 1000) / bucketMs) * bucketMs;
    const toMs = (Math.floor(now / bucketMs) + 1) * bucketMs;
    await fill(trendArea, ctx, async () => {
      const res = await ctx.api.audit.summarizeDecisionsOverTime(
        {
          routedAfter: timestampFromMs(fromMs),
          routedBefore: timestampFromMs(toMs),
          bucketWidth: create(DurationSchema, { seconds: BigInt(r.bucket) }),
          selectedAgent: agent.value.trim(),
        },
        { signal: ctx.signal },
      );
      if (res.buckets.length === 0) return h("p", { class: "muted" }, "No decisions were routed in this range.");
      const rows = res.buckets.map((b) =>
        h(
          "tr",
          null,
          h("td", null, timeText(b.startTime)),
          h("td", { class: "num" }, String(b.totalDecisions)),
          h("td", { class: "num" }, String(b.failedDecisions)),
          h("td", { class: "num" }, percent(b.successRate)),
          h("td", { class: "num" }, durationText(b.averageTaskDuration)),
        ),
      );
      return [
        trendChart(res.buckets, fromMs, toMs),
        chartLegend(),
        h("details", null, h("summary", null, "The same as a table"),
          table("Buckets with decisions, oldest first", ["Bucket start", "Decisions", "Failed", "Success rate", "Average task duration"], rows, "")),
      ];
    });
  }

  async function loadUnder(): Promise<void> {
    const rate = Number(threshold.value) / 100;
    await fill(under, ctx, async () => {
      const res = await ctx.api.statistics.listUnderperformingAgents({ successRateThreshold: rate, minimumTasks: 1n, limit: 20 }, { signal: ctx.signal });
      return table(`Success rate below ${percent(rate)}, worst first`, RANKING_HEADERS, res.statistics.map((r) => statisticsRow(r)), "No agent is below this success rate.");
    });
  }

  void loadTrend();
  void fill(top, ctx, async () => {
    const res = await ctx.api.statistics.listTopPerformingAgents({ limit: 10, minimumTasks: 1n }, { signal: ctx.signal });
    return table("Highest success rate first, then shortest average duration", RANKING_HEADERS, res.statistics.map((r) => statisticsRow(r)), "No agent has statistics yet.");
  });
  void loadUnder();

  void pagedTable(all, ctx, {
    caption: "By agent key",
    headers: STATISTICS_HEADERS,
    empty: "No agent has statistics yet.",
    more: "More agents",
    page: async (pageToken) => {
      const res = await ctx.api.statistics.listAgentStatistics({ pageSize: 50, pageToken }, { signal: ctx.signal });
      return { rows: res.statistics.map((r) => statisticsRow(r, true)), nextPageToken: res.nextPageToken };
    },
  });
};
