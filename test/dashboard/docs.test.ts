// Docs match the code: the README says how to open the dashboard and
// documents its variable; docs/dashboard.md shows every view, with pictures
// that the browser tests took (npm run screenshots).
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { defaultConfig, loadConfig } from "../../src/config.js";

describe("the docs", () => {
  const root = path.resolve(import.meta.dirname, "../..");
  it("the README's configuration table documents DASHBOARD_PORT with its default, and says how to open the dashboard", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
    expect(readme).toMatch(/^\| `DASHBOARD_PORT` \| unset \| /m);
    expect(defaultConfig.dashboardPort).toBeUndefined();
    expect(loadConfig({ DASHBOARD_PORT: "8080" }).dashboardPort).toBe(8080);
    expect(readme).toContain("DASHBOARD_PORT=8080 npm start");
    expect(readme).toContain("<http://127.0.0.1:8080/>");
  });
  it("docs/dashboard.md shows a screenshot of each view, and each is in docs/dashboard/ and small", () => {
    const doc = fs.readFileSync(path.join(root, "docs", "dashboard.md"), "utf8");
    const pictures = [...doc.matchAll(/!\[[^\]]*\]\((dashboard\/[a-z-]+\.png)\)/g)].map((m) => m[1]!);
    expect(pictures).toEqual(expect.arrayContaining(["dashboard/breakers.png", "dashboard/agents.png", "dashboard/workflows.png", "dashboard/workflow-timeline.png", "dashboard/decisions.png"]));
    for (const picture of pictures) expect(fs.statSync(path.join(root, "docs", picture)).size, picture).toBeLessThan(250_000);
  });
});
