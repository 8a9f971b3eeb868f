import { create } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  type CircuitBreaker,
  CircuitBreakerSchema,
  type CircuitBreakerTransition,
  CircuitState,
  TransitionReason,
} from "../../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { errorText, isAuthFailure } from "../api.js";
import { h, replace } from "../dom.js";
import { enumText, spanText, timeMs, timeText } from "../format.js";
import { pagedTable, table, type View } from "./common.js";

// Every breaker of the tenant, kept current by WatchCircuitBreakers: the
// stream first sends the current states, then each transition as it is
// committed through any replica. Nothing polls: a transition updates its row
// at once, and one GetCircuitBreakerState fills in what a transition does not
// carry (reset time, trial calls). The countdown to a retry runs on the
// browser's clock.

/** CSS class and data-state value of a state: "open", "half-open", ... */
export function stateSlug(state: CircuitState): string {
  return enumText(CircuitState, state).replaceAll(" ", "-");
}

function stateBadge(state: CircuitState): HTMLElement {
  return h("span", { class: `badge state-${stateSlug(state)}` }, enumText(CircuitState, state));
}

/**
 * When an OPEN breaker lets a trial call through (on the browser's clock), or
 * how many of a HALF_OPEN breaker's trial calls were granted.
 */
function retryText(b: CircuitBreaker, now: number): string {
  if (b.state === CircuitState.FORCED_OPEN) return "when an operator resets it";
  if (b.state === CircuitState.HALF_OPEN && b.effectivePolicy !== undefined) {
    return `${b.trialCallsGranted} of ${b.effectivePolicy.halfOpenTrialCalls} trial calls granted`;
  }
  if (b.state !== CircuitState.OPEN) return "—";
  if (b.resetAt === undefined) return "—";
  const remaining = timeMs(b.resetAt) - now;
  return remaining > 0 ? `in ${spanText(remaining)}` : "now (half-open at the next permission request)";
}

function later(a: Timestamp | undefined, b: Timestamp | undefined): boolean {
  if (a === undefined) return false;
  if (b === undefined) return true;
  return a.seconds > b.seconds || (a.seconds === b.seconds && a.nanos >= b.nanos);
}

export const breakersView: View = (root, ctx) => {
  const breakers = new Map<string, CircuitBreaker>();
  const changed = new Set<string>();
  // Rows changed by a transition whose counts and reset time are being read again.
  const rereading = new Set<string>();
  const status = h("p", { class: "live", role: "status" }, "Connecting…");
  const summary = h("p", { class: "summary" });
  const tableArea = h("div", { class: "table-wrap" });
  const history = h("div");
  let historyOf: string | undefined;
  let historyRows: HTMLTableSectionElement | undefined;

  replace(
    root,
    h("h1", null, "Circuit breakers"),
    status,
    summary,
    tableArea,
    history,
  );

  function render(): void {
    const now = Date.now();
    const sorted = [...breakers.values()].sort((a, b) => (a.agentKey < b.agentKey ? -1 : a.agentKey > b.agentKey ? 1 : 0));
    const counts = new Map<CircuitState, number>();
    for (const b of sorted) counts.set(b.state, (counts.get(b.state) ?? 0) + 1);
    replace(
      summary,
      sorted.length === 0
        ? ""
        : [...counts.entries()].sort(([a], [b]) => a - b).map(([state, n]) => h("span", { class: `count state-${stateSlug(state)}` }, `${n} ${enumText(CircuitState, state)}`)),
    );
    const rows = sorted.map((b) => {
      const slug = stateSlug(b.state);
      const counts = rereading.has(b.agentKey) ? ["…", "…", "…"] : [b.failureCount, b.successCount, b.consecutiveFailures].map(String);
      const row = h(
        "tr",
        { class: `state-${slug}${changed.has(b.agentKey) ? " changed" : ""}`, "data-agent": b.agentKey, "data-state": slug },
        h("th", { scope: "row" }, b.agentKey),
        h("td", null, stateBadge(b.state)),
        counts.map((n) => h("td", { class: "num" }, n)),
        h("td", { class: "retry" }, rereading.has(b.agentKey) ? "…" : retryText(b, now)),
        h("td", null, timeText(b.updateTime)),
        h("td", null, h("button", { type: "button", onclick: () => void showHistory(b.agentKey) }, "History", h("span", { class: "visually-hidden" }, ` of ${b.agentKey}`))),
      );
      return row;
    });
    changed.clear();
    replace(
      tableArea,
      table(
        "Every agent's breaker; counts since it entered its current state. A transition changes its row at once, then the row is read again.",
        ["Agent", "State", "Failures", "Successes", "Consecutive failures", "Retry or trials", "Updated", ""],
        rows,
        "This tenant has no circuit breakers.",
      ),
    );
  }

  // The countdowns move every second without asking the server.
  const tick = setInterval(() => {
    const now = Date.now();
    for (const row of tableArea.querySelectorAll<HTMLTableRowElement>("tr[data-agent]")) {
      const b = breakers.get(row.dataset.agent!);
      const cell = row.querySelector(".retry");
      if (b !== undefined && cell !== null && !rereading.has(b.agentKey)) cell.textContent = retryText(b, now);
    }
  }, 1000);
  ctx.signal.addEventListener("abort", () => clearInterval(tick));

  // A transition carries the new state and its time; the counts it carries
  // are those of the state it left, so the row's counts and reset time wait
  // for the read that follows.
  function applyTransition(t: CircuitBreakerTransition): void {
    const known = breakers.get(t.agentKey);
    const fields = { state: t.toState, updateTime: t.transitionTime };
    breakers.set(t.agentKey, known === undefined ? create(CircuitBreakerSchema, { agentKey: t.agentKey, ...fields }) : { ...known, ...fields });
    changed.add(t.agentKey);
    rereading.add(t.agentKey);
    if (historyOf === t.agentKey && historyRows !== undefined) {
      historyRows.querySelector("td.muted")?.parentElement?.remove();
      historyRows.prepend(transitionRow(t));
    }
    void refresh(t.agentKey);
  }

  // One read after a transition (another one if more transitions came in the
  // meantime), for the fields a transition does not carry; a newer state
  // already shown is never replaced by an older read.
  const reading = new Map<string, boolean>(); // agent -> read again when done
  async function refresh(agentKey: string): Promise<void> {
    if (reading.has(agentKey)) {
      reading.set(agentKey, true);
      return;
    }
    reading.set(agentKey, false);
    try {
      const res = await ctx.api.breakers.getCircuitBreakerState({ agentKey }, { signal: ctx.signal });
      const b = res.circuitBreaker;
      if (b !== undefined && later(b.updateTime, breakers.get(agentKey)?.updateTime)) breakers.set(agentKey, b);
      rereading.delete(agentKey);
      render();
    } catch {
      // The row keeps what the transition said ("…" for the rest); the next transition reads again.
    } finally {
      const again = reading.get(agentKey);
      reading.delete(agentKey);
      if (again === true) void refresh(agentKey);
    }
  }

  async function watch(): Promise<void> {
    for (let failures = 0; !ctx.signal.aborted; ) {
      try {
        const current = new Map<string, CircuitBreaker>();
        let caughtUp = false;
        for await (const res of ctx.api.breakers.watchCircuitBreakers({ includeCurrentStates: true }, { signal: ctx.signal })) {
          const event = res.event;
          if (event.case === "currentState") current.set(event.value.agentKey, event.value);
          else if (event.case === "caughtUp") {
            caughtUp = true;
            failures = 0;
            breakers.clear();
            rereading.clear();
            for (const [key, b] of current) breakers.set(key, b);
            status.textContent = "Live: each transition appears as soon as it is committed.";
            status.className = "live ok";
            render();
          } else if (event.case === "transition" && caughtUp) {
            applyTransition(event.value);
            render();
          }
        }
        throw new Error("the server ended the watch");
      } catch (err) {
        if (ctx.signal.aborted) return;
        if (isAuthFailure(err)) {
          ctx.authFailed(err);
          return;
        }
        failures++;
        // Exponential backoff with jitter, at most 30 s; the next watch resends every state.
        const wait = Math.round(Math.min(30_000, 500 * 2 ** failures) * (0.5 + Math.random() / 2));
        status.textContent = `Disconnected: ${errorText(err)}. Reconnecting in ${spanText(wait)}…`;
        status.className = "live error";
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  function transitionRow(t: CircuitBreakerTransition): HTMLTableRowElement {
    return h(
      "tr",
      { "data-transition": String(t.transitionId) },
      h("td", null, timeText(t.transitionTime)),
      h("td", null, stateBadge(t.fromState)),
      h("td", null, stateBadge(t.toState)),
      h("td", null, enumText(TransitionReason, t.reason)),
      h("td", { class: "num" }, String(t.failureCount)),
      h("td", { class: "num" }, String(t.successCount)),
      h("td", { class: "num" }, String(t.consecutiveFailures)),
      h("td", { class: "num" }, t.windowCalls > 0 ? `${t.windowFailures} / ${t.windowCalls}` : "—"),
    );
  }

  async function showHistory(agentKey: string): Promise<void> {
    historyOf = agentKey;
    const heading = h("h2", { tabindex: -1 }, `History of ${agentKey}`);
    const body = h("div", { class: "table-wrap" });
    replace(
      history,
      h("section", { class: "panel", "aria-label": `History of ${agentKey}` },
        h("div", { class: "panel-head" }, heading, h("button", { type: "button", onclick: () => { historyOf = undefined; replace(history); } }, "Close")),
        body,
      ),
    );
    heading.focus();
    historyRows = undefined;
    const rows = await pagedTable(body, ctx, {
      caption: "Newest first",
      headers: ["Time", "From", "To", "Reason", "Failures", "Successes", "Consecutive failures", "Window failures / calls"],
      empty: "No transitions.",
      more: "Older transitions",
      page: async (pageToken) => {
        const res = await ctx.api.breakers.listCircuitBreakerTransitions({ agentKey, pageToken, pageSize: 20 }, { signal: ctx.signal });
        return { rows: res.transitions.map(transitionRow), nextPageToken: res.nextPageToken };
      },
    });
    if (historyOf === agentKey) historyRows = rows;
  }

  void watch();
};
