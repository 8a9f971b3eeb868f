import { spawn } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { PROMTOOL } from "../support/prometheus.js";

// The alerting rules are valid, and each alert fires (and stays quiet) as its
// unit tests in monitoring/alerts.test.yml say; CI runs the same two commands.
// (metrics.test.ts checks that the rules use only series the server exports.)

const monitoring = path.resolve(import.meta.dirname, "../../monitoring");

function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL, args, { cwd: monitoring });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.once("error", (err) => reject(new Error(`promtool not found (${PROMTOOL}): run scripts/install-prometheus-tools.sh or set PROMTOOL: ${String(err)}`)));
    child.once("close", (code) => resolve({ code: code ?? -1, output }));
  });
}

describe("monitoring/alerts.yml", () => {
  it("passes promtool check rules", async () => {
    const { code, output } = await promtool("check", "rules", "alerts.yml");
    expect(output).toContain("SUCCESS: 6 rules found");
    expect(code).toBe(0);
  });

  it("passes its unit tests (promtool test rules alerts.test.yml)", async () => {
    const { code, output } = await promtool("test", "rules", "alerts.test.yml");
    expect(output).toContain("SUCCESS");
    expect(code).toBe(0);
  });
});
