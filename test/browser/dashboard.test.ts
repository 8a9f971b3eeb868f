// The dashboard in a real browser (Debian's Chromium driven by playwright-core;
// npm run test:browser, not part of npm test): sign-in, the four views over
// seeded data, a breaker turning red live, errors, tenancy and the keyboard.
// The screenshots in docs/dashboard/ are taken here (npm run screenshots).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Knex } from "knex";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { CircuitBreakerService, CircuitState } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import type { RoutingDecision } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { buildDashboard } from "../../web/build.js";
import { authClient, keyFixture } from "../auth/support.js";
import { backendName, createTestDatabase, postgresEnv } from "../support/backend.js";
import { freePort, killAll } from "../support/processes.js";
import { startServerProcess } from "../support/built-server.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { type Chromium, launchChromium } from "./support/chromium.js";
import { AGENTS, seedOtherTenant, seedTenant } from "./support/seed.js";

const k = keyFixture();
const screenshots = process.env.DASHBOARD_SCREENSHOTS_DIR
  ? path.resolve(process.env.DASHBOARD_SCREENSHOTS_DIR)
  : fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-screenshots-"));
let assets: string;
let knex: Knex;
let replicaKnex: Knex;
let t: TestServer; // serves the dashboard
let replica: TestServer; // another replica on the same database, without a dashboard
let browser: Chromium;
let decisions: RoutingDecision[];

beforeAll(async () => {
  assets = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-dashboard-"));
  await buildDashboard(assets);
  knex = await createTestDatabase();
  t = await startTestServer({ authKeys: k.authKeys }, knex, assets);
  // On PostgreSQL the replica has its own connections, as another process
  // would; the embedded PGlite is one database per process, so it shares it.
  replicaKnex = backendName === "postgres" ? await createTestDatabase() : knex;
  replica = await startTestServer({ authKeys: k.authKeys }, replicaKnex);
  decisions = await seedTenant(t.baseUrl, k.writerA);
  await seedOtherTenant(t.baseUrl, k.writerB);
  fs.mkdirSync(screenshots, { recursive: true });
  browser = await launchChromium();
}, 120_000);
afterAll(async () => {
  killAll();
  if (process.env.DASHBOARD_SCREENSHOTS_DIR === undefined) fs.rmSync(screenshots, { recursive: true, force: true });
  await browser?.close();
  await replica?.close();
  await t?.close();
  if (replicaKnex !== knex) await replicaKnex?.destroy();
  await knex?.destroy();
  fs.rmSync(assets, { recursive: true, force: true });
});

/** A new tab (its own sessionStorage) with the page's errors collected. */
async function newPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(err.message));
  // A refused Content-Security-Policy shows up as a console error.
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(msg.text());
  });
  return { page, errors };
}

async function signIn(page: Page, credential: string): Promise<void> {
  await page.goto(`${t.dashboardUrl}/`);
  await page.fill("#credential", credential);
  await page.keyboard.press("Enter");
  await page.waitForSelector("header nav");
}

/** Saves a screenshot of the viewport; the files stay small (one laptop screen, PNG). */
async function screenshot(page: Page, name: string): Promise<void> {
  const file = path.join(screenshots, `${name}.png`);
  await page.screenshot({ path: file, animations: "disabled", caret: "hide" });
  expect(fs.statSync(file).size).toBeLessThan(250_000);
}

/** Every text on the page, to search for another tenant's names. */
const pageText = (page: Page) => page.evaluate(() => document.body.innerText);

describe(`the dashboard in Chromium (${backendName})`, () => {
  it("a wrong key shows an error on the sign-in form, not a blank page", async () => {
    const { page, errors } = await newPage();
    await page.goto(`${t.dashboardUrl}/`);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("credential");
    await page.fill("#credential", "not-a-configured-key-0123456789");
    await page.keyboard.press("Enter");
    const alert = page.locator('form.login [role="alert"]');
    await alert.waitFor({ state: "visible" });
    expect(await alert.innerText()).toMatch(/^Sign-in failed: the API key is not valid \(UNAUTHENTICATED\)$/);
    expect(await page.locator("header nav").count()).toBe(0);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await screenshot(page, "sign-in-error");
    expect(errors.filter((e) => !e.includes("401"))).toEqual([]);
    await page.close();
  });

  it("signs in with a read-only key and shows the tenant's breakers in every state, live", async () => {
    const { page, errors } = await newPage();
    await signIn(page, k.readerA);
    await page.waitForSelector(".live.ok");
    const states = await page.$$eval("tr[data-agent]", (rows) => rows.map((r) => [(r as HTMLElement).dataset.agent, (r as HTMLElement).dataset.state]));
    expect(Object.fromEntries(states)).toEqual({
      "billing-agent": "forced-open",
      "classifier-2": "closed",
      "legacy-agent": "disabled",
      "search-agent": "closed",
      "summarizer-1": "open",
      translator: "half-open",
    });
    // The OPEN breaker counts down to its retry; the counts are the breaker's.
    expect(await page.locator('tr[data-agent="summarizer-1"] .retry').innerText()).toMatch(/^in [45] min \d+ s$/);
    expect(await page.locator('tr[data-agent="translator"] .retry').innerText()).toBe("1 of 3 trial calls granted");
    for (const agentKey of ["summarizer-1", "classifier-2"]) {
      const stored = (await authClient(CircuitBreakerService, t.baseUrl, { key: k.readerA }).getCircuitBreakerState({ agentKey })).circuitBreaker!;
      expect(await page.locator(`tr[data-agent="${agentKey}"] td.num`).allInnerTexts()).toEqual(
        [stored.failureCount, stored.successCount, stored.consecutiveFailures].map(String),
      );
    }
    expect(await page.locator('tr[data-agent="classifier-2"] td.num').allInnerTexts()).toEqual(["3", "5", "2"]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("a RecordCallOutcome made through another replica turns the breaker red on the open page within a second", async () => {
    const { page, errors } = await newPage();
    await signIn(page, k.readerA);
    await page.waitForSelector('.live.ok');
    await page.waitForSelector('tr[data-agent="search-agent"][data-state="closed"]');
    // The page notes the moment the row turns open (its own clock; the same machine's).
    await page.evaluate(() => {
      const w = window as unknown as { openedAt?: number };
      const seen = () => {
        if (w.openedAt === undefined && document.querySelector('tr[data-agent="search-agent"][data-state="open"]') !== null) w.openedAt = Date.now();
      };
      new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    const breakers = authClient(CircuitBreakerService, replica.baseUrl, { key: k.writerA });
    const first = await breakers.recordCallOutcome({ agentKey: "search-agent", success: false });
    expect(first.stateChanged).toBe(false);
    // Timed from before the call that commits the transition: the bound includes the call itself.
    const sent = Date.now();
    const res = await breakers.recordCallOutcome({ agentKey: "search-agent", success: false });
    expect(res.transition).toMatchObject({ fromState: CircuitState.CLOSED, toState: CircuitState.OPEN });
    const openedAt = (await (await page.waitForFunction(() => (window as unknown as { openedAt?: number }).openedAt, undefined, { timeout: 10_000 })).jsonValue()) as number;
    // The issue asks for one second; measured here from before the RPC was sent.
    expect(openedAt - sent).toBeLessThan(1_000);
    const badge = page.locator('tr[data-agent="search-agent"] .badge');
    expect(await badge.innerText()).toBe("open");
    expect(await badge.evaluate((el) => getComputedStyle(el).backgroundColor)).toBe("rgb(194, 29, 29)");
    // Then its reset time arrives from GetCircuitBreakerState: a countdown from 10 minutes.
    await page.waitForFunction(() => /^in (9|10) min/.test(document.querySelector('tr[data-agent="search-agent"] .retry')?.textContent ?? ""));

    // Its history, newest first, from ListCircuitBreakerTransitions.
    await page.click('tr[data-agent="search-agent"] button');
    const history = page.locator('section[aria-label="History of search-agent"] tbody tr');
    await history.first().waitFor();
    // Saving it CLOSED at first was no change of state: this is its only transition.
    expect(await history.allInnerTexts()).toEqual([expect.stringMatching(/closed\s+open\s+consecutive failures\s+3\s+2\s+3\s+3 \/ 5$/)]);
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("History of search-agent");
    await screenshot(page, "breakers");
    expect(errors).toEqual([]);
    await page.close();
  });

  it("shows the agents' statistics, top and underperforming, and the trend from the audit trail", async () => {
    const { page, errors } = await newPage();
    await signIn(page, k.readerA);
    await page.click('nav a[data-view="agents"]');
    await page.waitForSelector("svg.chart rect.bar");
    const top = page.locator("section", { hasText: "Top performing agents" }).locator("tbody tr[data-agent]");
    expect(await top.evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.agent))).toEqual(["search-agent", "classifier-2", "translator", "summarizer-1"]);
    const under = page.locator("section", { hasText: "Underperforming agents" }).locator("tbody tr[data-agent]");
    await under.first().waitFor();
    expect(await under.evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.agent))).toEqual(["summarizer-1", "translator"]);
    // 96 decisions over the last day in hourly buckets: 24 or 25 bars, adding up to 96.
    const bars = await page.locator("svg.chart rect.bar title").allTextContents();
    expect(bars.length).toBeGreaterThanOrEqual(24);
    expect(bars.reduce((sum, title) => sum + Number(/: (\d+) decisions/.exec(title)![1]), 0)).toBe(96);
    const every = page.locator("section", { hasText: "Every agent" }).locator("tbody tr[data-agent]");
    expect(await every.count()).toBe(AGENTS.length);
    await screenshot(page, "agents");

    // One agent's trend, and a threshold the user types.
    await page.fill('input[name="agent"]', "summarizer-1");
    await page.click("text=Show trend");
    await page.waitForFunction(() => {
      const titles = [...document.querySelectorAll("svg.chart rect.bar title")].map((t) => t.textContent ?? "");
      return titles.length > 0 && titles.reduce((s, x) => s + Number(/: (\d+) decisions/.exec(x)?.[1] ?? 0), 0) === 24;
    });
    await page.fill('input[name="threshold"]', "60");
    await page.click('section:has-text("Underperforming agents") button[type="submit"]');
    await page.locator("caption", { hasText: "Success rate below 60.0 %" }).waitFor();
    expect(await under.evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.agent))).toEqual(["summarizer-1"]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("lists incomplete executions with their age, filters them, and shows one execution's steps on a timeline", async () => {
    const { page, errors } = await newPage();
    await signIn(page, k.readerA);
    await page.click('nav a[data-view="workflows"]');
    await page.waitForSelector("tr[data-execution]");
    const listed = () => page.$$eval("tr[data-execution]", (rows) => rows.map((r) => (r as HTMLElement).dataset.execution));
    expect((await listed()).sort()).toEqual(["order-1042", "order-1043", "report-77"]);
    expect(await page.locator('tr[data-execution="order-1043"]').innerText()).toMatch(/fulfil-order\s+blocked\s+2 h 1\d min\s+1 \/ 4/);
    // Leases: two replicas' view of who resumes what (claimed by the seed for 10 minutes).
    expect(await page.locator('tr[data-execution="order-1042"] td.lease').innerText()).toMatch(/^replica-a, (9|10) min \d+ s left$/);
    expect(await page.locator('tr[data-execution="report-77"] td.lease').innerText()).toBe("—");
    await screenshot(page, "workflows");

    await page.fill('input[name="workflow"]', "weekly-report");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.querySelectorAll("tr[data-execution]").length === 1);
    expect(await listed()).toEqual(["report-77"]);
    await page.fill('input[name="workflow"]', "");
    await page.check('input[name="status"][value="4"]'); // COMPLETED
    await page.click("text=Filter");
    await page.waitForSelector('tr[data-execution="order-1001"]');

    await page.click('a[href="#/workflows/order-1042"]');
    await page.waitForSelector(".timeline li[data-step]");
    expect(await page.$$eval(".timeline li[data-step]", (items) => items.map((li) => (li as HTMLElement).dataset.step))).toEqual(["fetch", "price", "ship"]);
    expect(await page.locator('.timeline li[data-step="price"]').innerText()).toMatch(/price\s+attempt 2[\s\S]*completed classifier-2 · 7 min 0 s/);
    expect(await page.locator('.timeline li[data-step="ship"]').innerText()).toMatch(/running translator · 14 min \d+ s so far/);
    // The bars are placed on one axis: fetch starts at the left, ship ends at the right.
    const box = async (step: string) => (await page.locator(`.timeline li[data-step="${step}"] .bar`).boundingBox())!;
    const track = (await page.locator('.timeline li[data-step="fetch"] .track').boundingBox())!;
    expect(Math.abs((await box("fetch")).x - track.x)).toBeLessThan(2);
    expect(Math.abs((await box("ship")).x + (await box("ship")).width - (track.x + track.width))).toBeLessThan(3);
    expect((await box("price")).x).toBeGreaterThan((await box("fetch")).x + (await box("fetch")).width - 1);
    expect(await page.locator('tr[data-step="notify"]').innerText()).toMatch(/notify\s+ship\s+email/);
    await screenshot(page, "workflow-timeline");
    expect(errors).toEqual([]);
    await page.close();
  });

  it("lists recent decisions with their candidates and scores, filtered by agent, task type and time", async () => {
    const { page, errors } = await newPage();
    await signIn(page, k.readerA);
    await page.click('nav a[data-view="decisions"]');
    await page.waitForSelector("tr[data-decision]");
    expect(await page.locator("tr[data-decision]").count()).toBe(50);
    await page.click("text=More decisions");
    await page.waitForFunction(() => document.querySelectorAll("tr[data-decision]").length === 96);

    await page.fill('input[name="agent"]', "translator");
    await page.fill('input[name="task-type"]', "translate");
    await page.click("text=Filter");
    await page.waitForFunction(() => document.querySelectorAll("tr[data-decision]").length === 24);
    expect(new Set(await page.$$eval("tr[data-decision]", (rows) => rows.map((r) => (r as HTMLElement).dataset.agent)))).toEqual(new Set(["translator"]));
    await page.fill('input[name="task-type"]', "search");
    await page.click("text=Filter");
    await page.waitForSelector("text=No decisions match.");

    // The last six hours only (the browser's time zone is UTC, see launchChromium), of every agent.
    await page.fill('input[name="agent"]', "");
    await page.fill('input[name="task-type"]', "");
    const sixHoursAgo = Math.floor((Date.now() - 6 * 3600_000) / 1000) * 1000;
    const recent = decisions.filter((d) => timestampMs(d.routedAt!) >= sixHoursAgo).length;
    expect(recent).toBeGreaterThan(5);
    await page.fill('input[name="after"]', new Date(sixHoursAgo).toISOString().slice(0, 19));
    await page.click("text=Filter");
    await page.waitForFunction((n) => document.querySelectorAll("tr[data-decision]").length === n, recent);

    const first = page.locator("tr[data-decision]").first();
    const toggle = first.locator("button");
    expect(await toggle.getAttribute("aria-expanded")).toBe("false");
    await toggle.click();
    expect(await toggle.getAttribute("aria-expanded")).toBe("true");
    const candidates = page.locator("tr.detail:not([hidden]) li[data-candidate]");
    expect(await candidates.count()).toBeGreaterThanOrEqual(2);
    expect(await page.locator("tr.detail:not([hidden]) li.selected").innerText()).toContain("(selected)");
    await screenshot(page, "decisions");
    expect(errors).toEqual([]);
    await page.close();
  });

  it("never shows another tenant's breakers, agents, executions or decisions, not even live", async () => {
    const { page, errors } = await newPage();
    await signIn(page, k.readerA);
    await page.waitForSelector(".live.ok");
    // A transition of the other tenant, then one of ours: once ours is shown, the other's was not.
    await authClient(CircuitBreakerService, t.baseUrl, { key: k.writerB }).saveCircuitBreakerState({ circuitBreaker: { agentKey: "beta-live", state: CircuitState.FORCED_OPEN } });
    await authClient(CircuitBreakerService, t.baseUrl, { key: k.writerA }).saveCircuitBreakerState({ circuitBreaker: { agentKey: "classifier-2", state: CircuitState.FORCED_OPEN } });
    await page.waitForSelector('tr[data-agent="classifier-2"][data-state="forced-open"]');
    const texts = [await pageText(page)];
    for (const [view, rows] of [["agents", "tr[data-agent]"], ["workflows", "tr[data-execution]"], ["decisions", "tr[data-decision]"]]) {
      await page.click(`nav a[data-view="${view}"]`);
      await page.waitForSelector(rows!);
      await page.waitForFunction(() => document.querySelector('[aria-busy="true"]') === null && !document.body.innerText.includes("Loading…"));
      texts.push(await pageText(page));
    }
    for (const text of texts) {
      expect(text).not.toMatch(/beta/i);
      expect(text).not.toContain(k.tenantB);
    }
    // The other tenant's rows are there to be found, through its own key.
    const theirs = await authClient(CircuitBreakerService, t.baseUrl, { key: k.writerB }).listCircuitBreakerStates({});
    expect(theirs.circuitBreakers.map((b) => b.agentKey).sort()).toEqual(["beta-agent", "beta-live"]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("is usable with the keyboard alone: sign in, move between views, open a decision's candidates", async () => {
    const { page, errors } = await newPage();
    await page.goto(`${t.dashboardUrl}/`);
    await page.keyboard.type(k.readerA);
    await page.keyboard.press("Enter");
    await page.waitForSelector("header nav");
    const focusOn = async (name: string) => {
      for (let i = 0; i < 40; i++) {
        await page.keyboard.press("Tab");
        if ((await page.evaluate(() => document.activeElement?.textContent?.trim())) === name) return;
      }
      throw new Error(`Tab never reached "${name}"`);
    };
    await focusOn("Decisions");
    await page.keyboard.press("Enter");
    await page.waitForSelector("tr[data-decision]");
    expect(await page.locator("h1").innerText()).toBe("Routing decisions");
    expect(await page.locator('nav a[aria-current="page"]').innerText()).toBe("Decisions");
    // Focus shows: the focused control has an outline.
    await focusOn(await page.locator("tr[data-decision] button").first().innerText());
    expect(await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle)).toBe("solid");
    await page.keyboard.press("Enter");
    expect(await page.locator("tr[data-decision] button").first().getAttribute("aria-expanded")).toBe("true");
    expect(errors).toEqual([]);
    await page.close();
  });

  it("keeps the key for the tab's session only, and signs out", async () => {
    const { page } = await newPage();
    await signIn(page, k.readerA);
    const stored = await page.evaluate(() => ({ session: JSON.stringify(sessionStorage), local: localStorage.length, cookies: document.cookie }));
    expect(stored.session).toContain(k.readerA);
    expect(stored).toMatchObject({ local: 0, cookies: "" });
    expect((await browser.context.cookies()).length).toBe(0);
    // A reload of the tab stays signed in; another tab asks again.
    await page.reload();
    await page.waitForSelector("header nav");
    const { page: other } = await newPage();
    await other.goto(`${t.dashboardUrl}/`);
    await other.waitForSelector("#credential");
    await other.close();
    await page.click("text=Sign out");
    await page.waitForSelector("#credential");
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await page.close();
  });

  it("in development mode asks for a tenant id instead of a key", async () => {
    const dev = await startTestServer({}, knex, assets);
    try {
      const { page, errors } = await newPage();
      await page.goto(`${dev.dashboardUrl}/`);
      expect(await page.locator('label[for="credential"]').innerText()).toBe("Tenant id");
      await page.fill("#credential", "tenant-a");
      await page.keyboard.press("Enter");
      expect(await page.locator('form.login [role="alert"]').innerText()).toContain("A tenant id is a UUID");
      await page.fill("#credential", k.tenantA.toUpperCase());
      await page.keyboard.press("Enter");
      await page.waitForSelector('tr[data-agent="summarizer-1"][data-state="open"]');
      expect(await page.locator("header .who").innerText()).toBe(`Tenant ${k.tenantA} (development mode)`);
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await dev.close();
    }
  });
});

describe("the entry point", () => {
  it("with DASHBOARD_PORT serves the dashboard that npm run build wrote into dist/dashboard", async () => {
    // npm run test:browser builds dist/dashboard first; the README's `DASHBOARD_PORT=8080 npm start` does the same.
    const dashboardPort = await freePort();
    const database = process.env.TEST_DATABASE_URL ? postgresEnv() : { DATA_DIR: "memory://" };
    const main = await startServerProcess({ ...database, DASHBOARD_PORT: String(dashboardPort) });
    try {
      const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const deadline = Date.now() + 30_000;
        const poll = () => {
          const found = main.logs.find((l) => l.msg === "serving the dashboard over HTTP/1.1");
          if (found !== undefined) resolve(found);
          else if (Date.now() > deadline || !main.alive) reject(new Error(`no dashboard log line: ${JSON.stringify(main.logs)} ${main.stderr()}`));
          else setTimeout(poll, 50);
        };
        poll();
      });
      expect(line).toMatchObject({ port: dashboardPort, url: `http://localhost:${dashboardPort}/` });
      const { page, errors } = await newPage();
      await page.goto(`http://127.0.0.1:${dashboardPort}/`);
      await page.fill("#credential", newTenant());
      await page.keyboard.press("Enter");
      await page.waitForSelector("text=This tenant has no circuit breakers.");
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      main.child.kill("SIGTERM");
      expect((await main.exited).code).toBe(0);
    }
  });
});
