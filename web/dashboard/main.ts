// The dashboard's shell: sign in, the navigation, and the view of the current
// route (#/breakers, #/agents, #/workflows[/<execution id>], #/decisions).
// Every figure on the page comes from one of the service's RPCs, called with
// the credentials of this tab's session.
import { type Credentials, createApi, errorText } from "./api.js";
import { h, replace } from "./dom.js";
import { clearCredentials, loadCredentials, saveCredentials } from "./session.js";
import { agentsView } from "./views/agents.js";
import { breakersView } from "./views/breakers.js";
import type { View } from "./views/common.js";
import { decisionsView } from "./views/decisions.js";
import { workflowsView } from "./views/workflows.js";

const VIEWS: { name: string; title: string; view: View }[] = [
  { name: "breakers", title: "Breakers", view: breakersView },
  { name: "agents", title: "Agents", view: agentsView },
  { name: "workflows", title: "Workflows", view: workflowsView },
  { name: "decisions", title: "Decisions", view: decisionsView },
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** "development" when the server has no API keys: the page then asks for a tenant id instead. */
const developmentMode = document.querySelector<HTMLMetaElement>('meta[name="orchestrator-auth"]')?.content === "development";
const app = document.getElementById("app")!;
let leaveView: AbortController | undefined;

function showLogin(message?: string): void {
  leaveView?.abort();
  window.removeEventListener("hashchange", route);
  const error = h("p", { class: "error", role: "alert", hidden: message === undefined }, message ?? "");
  const input = developmentMode
    ? h("input", { id: "credential", name: "tenant", type: "text", required: true, autocomplete: "off", spellcheck: "false", placeholder: "7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10" })
    : h("input", { id: "credential", name: "api-key", type: "password", required: true, autocomplete: "off" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "login", onsubmit: (e: Event) => { e.preventDefault(); void signIn(); } },
    h("h1", null, "orchestrator-state"),
    developmentMode
      ? h("p", { class: "warning" }, "This server runs in development mode (no API keys): name the tenant to look at.")
      : h("p", null, "Sign in with an API key of your tenant; a read-only key is enough. It is kept in this tab only, until it closes or you sign out."),
    h("label", { for: "credential" }, developmentMode ? "Tenant id" : "API key"),
    input,
    error,
    button,
  );
  replace(app, h("main", { class: "login-page" }, form));
  input.focus();

  async function signIn(): Promise<void> {
    const value = input.value.trim();
    if (developmentMode && !UUID.test(value)) return fail("A tenant id is a UUID, for example 7c0e6c1e-5b7a-4c1e-9a51-8f2d6c3b9e10.");
    const credentials: Credentials = developmentMode ? { tenantId: value.toLowerCase() } : { apiKey: value };
    button.disabled = true;
    try {
      // The cheapest read of the tenant: proves the key before anything is shown.
      await createApi(credentials).breakers.listCircuitBreakerStates({ pageSize: 1 });
      saveCredentials(credentials);
      showApp(credentials);
    } catch (err) {
      fail(`Sign-in failed: ${errorText(err)}`);
    } finally {
      button.disabled = false;
    }
  }

  function fail(text: string): void {
    error.textContent = text;
    error.hidden = false;
    input.focus();
  }
}

let current: Credentials | undefined;

function showApp(credentials: Credentials): void {
  current = credentials;
  const nav = h(
    "nav",
    { "aria-label": "Views" },
    h("ul", null, VIEWS.map((v) => h("li", null, h("a", { href: `#/${v.name}`, "data-view": v.name }, v.title)))),
  );
  const who = developmentMode ? `Tenant ${credentials.tenantId} (development mode)` : "Signed in with an API key";
  replace(
    app,
    h(
      "header",
      null,
      h("span", { class: "brand" }, "orchestrator-state"),
      nav,
      h("span", { class: "who" }, who),
      h("button", { type: "button", onclick: () => signOut() }, "Sign out"),
    ),
    h("main", { id: "main", tabindex: -1 }),
  );
  window.addEventListener("hashchange", route);
  route();
}

function signOut(message?: string): void {
  clearCredentials();
  current = undefined;
  showLogin(message);
}

function route(): void {
  if (current === undefined) return;
  const [, name = "breakers", ...rest] = location.hash.split("/");
  const entry = VIEWS.find((v) => v.name === name) ?? VIEWS[0]!;
  leaveView?.abort();
  leaveView = new AbortController();
  for (const a of app.querySelectorAll<HTMLAnchorElement>("nav a")) {
    if (a.dataset.view === entry.name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${entry.title} · orchestrator-state`;
  const main = app.querySelector<HTMLElement>("main")!;
  main.replaceChildren();
  entry.view(main, {
    api: createApi(current),
    signal: leaveView.signal,
    param: rest.length > 0 ? decodeURIComponent(rest.join("/")) : undefined,
    authFailed: (err) => signOut(`The server refused the credentials: ${errorText(err)}`),
  });
}

const saved = loadCredentials();
if (saved !== undefined) showApp(saved);
else showLogin();
