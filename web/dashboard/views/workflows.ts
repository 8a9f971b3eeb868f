import {
  type StepExecution,
  type WorkflowExecution,
  WorkflowStatus,
} from "../../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { h, replace } from "../dom.js";
import { enumText, msText, spanText, timeMs, timeText } from "../format.js";
import { field, fill, pagedTable, section, table, type View, type ViewContext } from "./common.js";

// Executions from ListWorkflowExecutions (by default the incomplete ones),
// filtered by workflow name and status, and one execution's steps on a
// timeline from GetWorkflowExecution.

const INCOMPLETE = [WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.BLOCKED];
const ALL = [...INCOMPLETE, WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED];

function statusBadge(status: WorkflowStatus): HTMLElement {
  const name = enumText(WorkflowStatus, status);
  return h("span", { class: `badge status-${name}` }, name);
}

/** How long ago the execution started (or was created, when it has not started). */
function age(e: WorkflowExecution, now: number): string {
  const since = e.startedAt ?? e.createTime;
  return since === undefined ? "—" : spanText(Math.max(0, now - timeMs(since)));
}

/**
 * Who holds the execution's lease (ClaimIncompleteWorkflows) and for how long:
 * "replica-a, 4 min 10 s left"; "replica-a, expired" once it lapsed (anyone may
 * claim it again); "—" when nobody claimed it.
 */
function leaseText(e: WorkflowExecution, now: number): string {
  const lease = e.lease;
  if (lease === undefined) return "—";
  const left = lease.expireTime === undefined ? 0 : timeMs(lease.expireTime) - now;
  return left > 0 ? `${lease.owner}, ${spanText(left)} left` : `${lease.owner}, expired`;
}

export const workflowsView: View = (root, ctx) => {
  if (ctx.param !== undefined) executionView(root, ctx, ctx.param);
  else listView(root, ctx);
};

function executionRow(e: WorkflowExecution, now: number): HTMLTableRowElement {
  return h(
    "tr",
    { "data-execution": e.executionId },
    h("th", { scope: "row" }, h("a", { href: `#/workflows/${encodeURIComponent(e.executionId)}` }, e.executionId)),
    h("td", null, e.workflowName),
    h("td", null, statusBadge(e.status)),
    h("td", null, age(e, now)),
    h("td", { class: "num" }, `${e.stepExecutions.filter((s) => s.status === WorkflowStatus.COMPLETED).length} / ${e.definition?.steps.length || e.stepExecutions.length}`),
    h("td", null, timeText(e.updateTime)),
    h("td", { class: "lease" }, leaseText(e, now)),
    h("td", null, e.initiatedBy || "—"),
  );
}

function listView(root: HTMLElement, ctx: ViewContext): void {
  const name = h("input", { name: "workflow", type: "text", maxlength: 200, placeholder: "every workflow", autocomplete: "off" });
  const boxes = ALL.map((status) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "status", value: status, checked: INCOMPLETE.includes(status) }), enumText(WorkflowStatus, status)),
  );
  const results = h("div", { class: "table-wrap" });
  const form = h(
    "form",
    { class: "filters", onsubmit: (e: Event) => { e.preventDefault(); void load(); } },
    field("Workflow name", name),
    h("fieldset", null, h("legend", null, "Status"), boxes),
    h("button", { type: "submit" }, "Filter"),
  );
  replace(root, h("h1", null, "Workflows"), form, results);

  async function load(): Promise<void> {
    const statuses = boxes.map((b) => b.querySelector("input")!).filter((i) => i.checked).map((i) => Number(i.value) as WorkflowStatus);
    const now = Date.now();
    await pagedTable(results, ctx, {
      caption: "Newest first; age since the execution started (or was first saved, when it has not started)",
      headers: ["Execution", "Workflow", "Status", "Age", "Steps done", "Updated", "Held by", "Initiated by"],
      empty: "No executions match.",
      more: "More executions",
      page: async (pageToken) => {
        const res = await ctx.api.workflows.listWorkflowExecutions({ workflowName: name.value.trim(), statuses, pageSize: 50, pageToken }, { signal: ctx.signal });
        return { rows: res.executions.map((e) => executionRow(e, now)), nextPageToken: res.nextPageToken };
      },
    });
  }
  void load();
}

function executionView(root: HTMLElement, ctx: ViewContext, executionId: string): void {
  const body = h("div");
  replace(root, h("p", null, h("a", { href: "#/workflows" }, "← Workflows")), h("h1", null, `Execution ${executionId}`), body);
  void fill(body, ctx, async () => {
    const res = await ctx.api.workflows.getWorkflowExecution({ executionId }, { signal: ctx.signal });
    const e = res.execution!;
    const now = Date.now();
    const facts: [string, Node | string][] = [
      ["Workflow", `${e.workflowName}${e.definition?.version ? ` (version ${e.definition.version})` : ""}`],
      ["Status", statusBadge(e.status)],
      ["Started", timeText(e.startedAt)],
      ["Completed", timeText(e.completedAt)],
      ["Age", age(e, now)],
      ["Initiated by", e.initiatedBy || "—"],
      ["Updated", timeText(e.updateTime)],
      ["Lease", e.lease === undefined ? "—" : `${leaseText(e, now)} (fencing token ${e.lease.fencingToken})`],
    ];
    if (e.errorMessage !== "") facts.push(["Error", e.errorMessage]);
    for (const [k, v] of Object.entries(e.labels)) facts.push([`Label ${k}`, v]);
    return [
      h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v)])),
      section("Steps", timeline(e, now)),
    ];
  });
}

/**
 * Each step execution as a bar from its start to its completion (or to now
 * while it runs), on one time axis from the first start to the last end;
 * steps of the definition that never ran are listed without a bar.
 */
function timeline(e: WorkflowExecution, now: number): HTMLElement {
  const ran = e.stepExecutions.filter((s) => s.startedAt !== undefined);
  const end = (s: StepExecution) => (s.completedAt !== undefined ? timeMs(s.completedAt) : now);
  const from = Math.min(...ran.map((s) => timeMs(s.startedAt!)), e.startedAt === undefined ? Infinity : timeMs(e.startedAt));
  const to = Math.max(...ran.map(end), e.completedAt === undefined ? -Infinity : timeMs(e.completedAt));
  const span = Math.max(1, to - from);
  const items = e.stepExecutions.map((s) => {
    const bar = h("div", { class: `bar status-${enumText(WorkflowStatus, s.status)}` });
    if (s.startedAt !== undefined && Number.isFinite(from)) {
      // Positions through the CSSOM: the Content-Security-Policy allows no inline style attribute.
      bar.style.left = `${((timeMs(s.startedAt) - from) / span) * 100}%`;
      bar.style.width = `${Math.max(0.5, ((end(s) - timeMs(s.startedAt)) / span) * 100)}%`;
    } else {
      bar.classList.add("unknown");
    }
    const took = s.startedAt === undefined ? "not started" : `${spanText(end(s) - timeMs(s.startedAt))}${s.completedAt === undefined ? " so far" : ""}`;
    return h(
      "li",
      { "data-step": s.stepId },
      h("span", { class: "step-name" }, s.stepId, s.attempt > 1 ? h("span", { class: "muted" }, ` attempt ${s.attempt}`) : null),
      h("div", { class: "track", "aria-hidden": "true" }, bar),
      h(
        "span",
        { class: "step-meta" },
        statusBadge(s.status),
        ` ${s.agentKey || "no agent"} · ${took}`,
        s.errorMessage !== "" ? h("span", { class: "error-text" }, ` · ${s.errorMessage}`) : null,
      ),
    );
  });
  const executed = new Set(e.stepExecutions.map((s) => s.stepId));
  const pending = (e.definition?.steps ?? []).filter((s) => !executed.has(s.stepId));
  return h(
    "div",
    null,
    items.length === 0
      ? h("p", { class: "muted" }, "No step has run yet.")
      : [
          h("p", { class: "muted" }, Number.isFinite(from) ? `From ${msText(from)} over ${spanText(span)}` : "Steps without start times"),
          h("ol", { class: "timeline" }, items),
        ],
    pending.length === 0
      ? null
      : table("Steps of the definition that have not run", ["Step", "Depends on", "Capability"], pending.map((s) =>
          h("tr", { "data-step": s.stepId }, h("th", { scope: "row" }, s.stepId), h("td", null, s.dependsOn.join(", ") || "—"), h("td", null, s.requiredCapability || "—"))), ""),
  );
}
