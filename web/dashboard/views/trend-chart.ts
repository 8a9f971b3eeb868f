import type { DecisionTimeBucket } from "../../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { h, svg } from "../dom.js";
import { msText, percent, timeMs, timeText } from "../format.js";

// The trend of SummarizeDecisionsOverTime as one SVG: a bar per bucket for
// the number of decisions (left scale) and a line through the buckets'
// success rates (right scale). Buckets without decisions are not returned,
// so they show as gaps, never as made-up zeros.

const W = 800;
const H = 200;
const PAD = { left: 48, right: 48, top: 10, bottom: 24 };

/** The chart of `buckets` over [fromMs, toMs). */
export function trendChart(buckets: DecisionTimeBucket[], fromMs: number, toMs: number): SVGSVGElement {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (ms: number) => PAD.left + ((ms - fromMs) / (toMs - fromMs)) * plotW;
  const maxTotal = Math.max(1, ...buckets.map((b) => Number(b.totalDecisions)));
  const yCount = (n: number) => PAD.top + plotH - (n / maxTotal) * plotH;
  const yRate = (rate: number) => PAD.top + plotH - rate * plotH;

  const bars = buckets.map((b) => {
    const start = timeMs(b.startTime!);
    const end = timeMs(b.endTime!);
    const total = Number(b.totalDecisions);
    return svg(
      "rect",
      { class: "bar", x: x(start) + 1, y: yCount(total), width: Math.max(1, x(end) - x(start) - 2), height: PAD.top + plotH - yCount(total) },
      svg("title", null, `${timeText(b.startTime)} to ${timeText(b.endTime)}: ${total} decisions, ${percent(b.successRate)} succeeded`),
    );
  });
  const points = buckets.map((b) => `${(x(timeMs(b.startTime!)) + x(timeMs(b.endTime!))) / 2},${yRate(b.successRate)}`);
  const dots = points.map((point) => {
    const [cx, cy] = point.split(",");
    return svg("circle", { class: "rate-dot", cx, cy, r: 3 });
  });
  const label = (text: string, attrs: Record<string, string | number>) => svg("text", attrs, text);
  return svg(
    "svg",
    { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Decisions and success rate per bucket, ${buckets.length} buckets with decisions` },
    svg("line", { class: "axis", x1: PAD.left, y1: PAD.top + plotH, x2: W - PAD.right, y2: PAD.top + plotH }),
    svg("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH }),
    svg("line", { class: "axis", x1: W - PAD.right, y1: PAD.top, x2: W - PAD.right, y2: PAD.top + plotH }),
    svg("line", { class: "grid", x1: PAD.left, y1: yRate(0.5), x2: W - PAD.right, y2: yRate(0.5) }),
    bars,
    points.length > 1 ? svg("polyline", { class: "rate", points: points.join(" ") }) : null,
    dots,
    label(String(maxTotal), { x: PAD.left - 6, y: PAD.top + 10, "text-anchor": "end" }),
    label("0", { x: PAD.left - 6, y: PAD.top + plotH, "text-anchor": "end" }),
    label("100 %", { x: W - PAD.right + 6, y: PAD.top + 10 }),
    label("50 %", { x: W - PAD.right + 6, y: yRate(0.5) + 4 }),
    label("0 %", { x: W - PAD.right + 6, y: PAD.top + plotH }),
    label(msText(fromMs), { x: PAD.left, y: H - 6 }),
    label(msText(toMs), { x: W - PAD.right, y: H - 6, "text-anchor": "end" }),
  );
}

/** The legend under the chart. */
export function chartLegend(): HTMLElement {
  return h(
    "p",
    { class: "legend" },
    h("span", { class: "key key-bar" }),
    "decisions per bucket (left scale) ",
    h("span", { class: "key key-rate" }),
    "success rate (right scale)",
  );
}
