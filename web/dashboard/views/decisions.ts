import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListRoutingDecisionsRequestSchema, RoutingDecision } from "../../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { h, replace } from "../dom.js";
import { durationText, scoreText, timeText } from "../format.js";
import { field, pagedTable, type View } from "./common.js";

// Recent routing decisions from ListRoutingDecisions, newest first, filtered
// by selected agent, task type, outcome and routed time; each decision's
// candidates with their scores on demand.

const HEADERS = ["Routed", "Task", "Task type", "Selected agent", "Score", "Outcome", "Task duration", "Routing duration", "Candidates"];

/** The candidates of a decision with their scores, the selected one marked. */
function candidatesList(d: RoutingDecision): HTMLElement {
  if (d.candidates.length === 0) return h("p", { class: "muted" }, "The router recorded no candidates.");
  const max = Math.max(...d.candidates.map((c) => Math.abs(c.score)), Number.MIN_VALUE);
  return h(
    "ol",
    { class: "candidates" },
    d.candidates.map((c) => {
      const bar = h("span", { class: "score-bar" });
      bar.style.width = `${(Math.abs(c.score) / max) * 100}%`;
      const selected = c.agentKey === d.selectedAgent;
      return h(
        "li",
        { class: selected ? "selected" : "", "data-candidate": c.agentKey },
        h("span", { class: "candidate-name" }, c.agentKey, selected ? h("strong", null, " (selected)") : null),
        h("span", { class: "score-track", "aria-hidden": "true" }, bar),
        h("span", { class: "num" }, scoreText(c.score)),
      );
    }),
  );
}

function decisionRows(d: RoutingDecision): HTMLTableRowElement[] {
  const detail = h("tr", { class: "detail", hidden: true }, h("td", { colspan: HEADERS.length }, candidatesList(d)));
  const toggle = h(
    "button",
    { type: "button", "aria-expanded": "false", onclick: () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      detail.hidden = !open;
    } },
    `${d.candidates.length} candidate${d.candidates.length === 1 ? "" : "s"}`,
  );
  const row = h(
    "tr",
    { "data-decision": d.decisionId, "data-agent": d.selectedAgent },
    h("td", null, timeText(d.routedAt)),
    h("th", { scope: "row" }, d.taskId),
    h("td", null, d.taskType || "—"),
    h("td", null, d.selectedAgent),
    h("td", { class: "num" }, scoreText(d.agentScore)),
    h("td", { class: "wrap" }, d.success ? h("span", { class: "badge ok" }, "succeeded") : h("span", { class: "badge failed", title: d.errorMessage }, "failed"),
      !d.success && d.errorMessage !== "" ? h("span", { class: "error-text" }, ` ${d.errorMessage}`) : null),
    h("td", { class: "num" }, durationText(d.taskDuration)),
    h("td", { class: "num" }, durationText(d.routingDuration)),
    h("td", null, toggle),
  );
  return [row, detail];
}

/** A datetime-local input's value (local time) as milliseconds, or undefined when empty. */
function localMs(input: HTMLInputElement): number | undefined {
  return input.value === "" ? undefined : new Date(input.value).getTime();
}

export const decisionsView: View = (root, ctx) => {
  const agent = h("input", { name: "agent", type: "text", maxlength: 200, placeholder: "any agent", autocomplete: "off" });
  const taskType = h("input", { name: "task-type", type: "text", maxlength: 200, placeholder: "any type", autocomplete: "off" });
  const outcome = h("select", { name: "outcome" }, h("option", { value: "" }, "any"), h("option", { value: "true" }, "succeeded"), h("option", { value: "false" }, "failed"));
  const after = h("input", { name: "after", type: "datetime-local", step: 1 });
  const before = h("input", { name: "before", type: "datetime-local", step: 1 });
  const results = h("div", { class: "table-wrap" });
  const form = h(
    "form",
    { class: "filters", onsubmit: (e: Event) => { e.preventDefault(); void load(); } },
    field("Selected agent", agent),
    field("Task type", taskType),
    field("Outcome", outcome),
    field("Routed from", after),
    field("Routed before", before),
    h("button", { type: "submit" }, "Filter"),
  );
  replace(root, h("h1", null, "Routing decisions"), form, results);

  async function load(): Promise<void> {
    const from = localMs(after);
    const to = localMs(before);
    const req: MessageInitShape<typeof ListRoutingDecisionsRequestSchema> = {
      selectedAgent: agent.value.trim(),
      taskType: taskType.value.trim(),
      pageSize: 50,
      ...(outcome.value === "" ? {} : { success: outcome.value === "true" }),
      ...(from === undefined ? {} : { routedAfter: timestampFromMs(from) }),
      ...(to === undefined ? {} : { routedBefore: timestampFromMs(to) }),
    };
    await pagedTable(results, ctx, {
      caption: "Newest first",
      headers: HEADERS,
      empty: "No decisions match.",
      more: "More decisions",
      page: async (pageToken) => {
        const res = await ctx.api.audit.listRoutingDecisions({ ...req, pageToken }, { signal: ctx.signal });
        return { rows: res.decisions.flatMap(decisionRows), nextPageToken: res.nextPageToken };
      },
    });
  }
  void load();
};
