import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as path from "node:path";

// Prometheus's own tools, to read what /metrics serves as Prometheus would:
// the exposition parser of the Prometheus Python client (Debian's
// python3-prometheus-client, for Debian's /usr/bin/python3) and promtool
// (Debian's prometheus package; .ci/run installs both, README "Development"
// says how). Neither is optional: a test that cannot find them fails, saying
// what to install.

const INSTALLED_PROMTOOL = path.resolve(import.meta.dirname, "../../.tools/prometheus/usr/bin/promtool");

/** One sample of a scrape. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const PYTHON = process.env.PROMETHEUS_PYTHON ?? "/usr/bin/python3";
const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value})
json.dump(out, sys.stdout)
`;

/** Parses a scrape with the Prometheus Python client's parser (it throws on anything malformed). */
export async function parseExposition(text: string): Promise<Sample[]> {
  const { stdout, stderr, code } = await run(PYTHON, ["-c", PARSE], text);
  if (code !== 0) {
    throw new Error(`the Prometheus client parser (${PYTHON}, python3-prometheus-client) refused the scrape or is missing: ${stderr}`);
  }
  return JSON.parse(stdout) as Sample[];
}

/** promtool: $PROMTOOL, else the one scripts/install-prometheus-tools.sh unpacked, else promtool on the PATH. */
export const PROMTOOL =
  process.env.PROMTOOL ?? (existsSync(INSTALLED_PROMTOOL) ? INSTALLED_PROMTOOL : "promtool");

/** `promtool check metrics` on a scrape: its lint findings (empty when clean), or a throw when promtool is missing. */
export async function promtoolCheckMetrics(text: string): Promise<{ code: number; output: string }> {
  const { stdout, stderr, code } = await run(PROMTOOL, ["check", "metrics"], text).catch((err: unknown) => {
    throw new Error(`promtool not found (${PROMTOOL}): run scripts/install-prometheus-tools.sh or set PROMTOOL (README, "Development"): ${String(err)}`);
  });
  return { code, output: stdout + stderr };
}

/** Runs a command with `input` on stdin. */
function run(command: string, args: string[], input: string): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.once("error", reject);
    child.once("close", (code) => resolve({ stdout, stderr, code: code ?? -1 }));
    child.stdin.end(input);
  });
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

