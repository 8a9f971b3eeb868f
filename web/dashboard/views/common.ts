import { type Api, errorText, isAuthFailure } from "../api.js";
import { h, replace } from "../dom.js";

/** What a view gets from the shell. */
export interface ViewContext {
  api: Api;
  /** Aborted when the user leaves the view: its streams and calls stop. */
  signal: AbortSignal;
  /** The route after the view's name (`#/workflows/<id>`), decoded; undefined when none. */
  param: string | undefined;
  /** The server refused the credentials: the shell signs out and says why. */
  authFailed(err: unknown): void;
}

/** Renders a view into `root`. */
export type View = (root: HTMLElement, ctx: ViewContext) => void;

/** An error the server answered, shown where its data would be (never a blank area). */
export function errorBox(err: unknown): HTMLElement {
  return h("p", { class: "error", role: "alert" }, errorText(err));
}

/** Shows an error in `target`, or signs out when the server refused the credentials. */
function report(target: HTMLElement, ctx: ViewContext, err: unknown): void {
  if (isAuthFailure(err)) ctx.authFailed(err);
  else replace(target, errorBox(err));
}

/** Runs `work`; an error it throws is reported in `errorTarget` (see report), unless the view was left. */
export async function attempt(errorTarget: HTMLElement, ctx: ViewContext, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    if (!ctx.signal.aborted) report(errorTarget, ctx, err);
  }
}

// The latest load of each target: an older one that answers later is dropped.
const latest = new WeakMap<HTMLElement, number>();
let loads = 0;

/**
 * Runs `load` and puts what it returns into `target`, "Loading…" meanwhile;
 * an error goes into `target` instead (see report). When `target` is filled
 * again before this load answers (a filter submitted twice), only the last
 * load's answer or error is shown.
 */
export async function fill(target: HTMLElement, ctx: ViewContext, load: () => Promise<Node | Node[]>): Promise<void> {
  const id = ++loads;
  latest.set(target, id);
  const current = () => !ctx.signal.aborted && latest.get(target) === id;
  target.setAttribute("aria-busy", "true");
  if (target.childElementCount === 0) replace(target, h("p", { class: "muted" }, "Loading…"));
  try {
    const content = await load();
    if (current()) replace(target, content);
  } catch (err) {
    if (current()) report(target, ctx, err);
  } finally {
    if (current()) target.removeAttribute("aria-busy");
  }
}

/** A table with a header row; `empty` is said in one row when there are no rows. */
export function table(caption: string, headers: string[], rows: HTMLTableRowElement[], empty: string): HTMLTableElement {
  const body = h("tbody", null, rows);
  if (rows.length === 0) body.append(emptyRow(headers, empty));
  return tableOf(caption, headers, body);
}

function tableOf(caption: string, headers: string[], body: HTMLTableSectionElement): HTMLTableElement {
  return h("table", null, h("caption", null, caption), h("thead", null, h("tr", null, headers.map((name) => h("th", { scope: "col" }, name)))), body);
}

function emptyRow(headers: string[], empty: string): HTMLTableRowElement {
  return h("tr", null, h("td", { colspan: headers.length, class: "muted" }, empty));
}

/** What a paged table shows, and how it reads one page of a List RPC. */
export interface PagedTable {
  caption: string;
  headers: string[];
  /** Said in one row when the first page is empty. */
  empty: string;
  /** The label of the button that reads the next page. */
  more: string;
  page(pageToken: string): Promise<{ rows: HTMLTableRowElement[]; nextPageToken: string }>;
}

/**
 * Fills `target` with a table of a List RPC's first page and a button for
 * each next one (the RPC's `next_page_token`); resolves with the table's body.
 */
export async function pagedTable(target: HTMLElement, ctx: ViewContext, spec: PagedTable): Promise<HTMLTableSectionElement> {
  const body = h("tbody");
  const more = h("div");
  const load = async (pageToken: string): Promise<void> => {
    const { rows, nextPageToken } = await spec.page(pageToken);
    body.append(...rows);
    if (body.childElementCount === 0) body.append(emptyRow(spec.headers, spec.empty));
    replace(more, nextPageToken === "" ? "" : h("button", { type: "button", onclick: () => void attempt(more, ctx, () => load(nextPageToken)) }, spec.more));
  };
  await fill(target, ctx, async () => {
    await load("");
    return [tableOf(spec.caption, spec.headers, body), more];
  });
  return body;
}

/** A labelled form control. */
export function field(label: string, control: HTMLElement): HTMLLabelElement {
  return h("label", { class: "field" }, h("span", null, label), control);
}

/** A `<section>` with a heading. */
export function section(title: string, ...children: Node[]): HTMLElement {
  return h("section", null, h("h2", null, title), ...children);
}
