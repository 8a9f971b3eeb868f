import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "./support/server.js";

// Docs match the code: every `buf curl` example of the README runs, as
// written, against a real server (only the address is changed to the test
// server's), in the order the README gives them.

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const readme = readFileSync(path.join(root, "README.md"), "utf8");
const examples = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
  .map((m) => m[1]!.replace(/\\\n\s*/g, " ").trim())
  .filter((command) => command.startsWith("npx buf curl"));

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

describe("README buf curl examples", () => {
  it("the README has examples for every WorkflowStateService RPC, health and reflection", () => {
    const text = examples.join("\n");
    for (const rpc of [
      "--list-services",
      "Health/Check",
      "SaveWorkflowExecution",
      "GetWorkflowExecution",
      "ListWorkflowExecutions",
      "StreamIncompleteWorkflows",
      "DeleteWorkflowExecutions",
    ]) {
      expect(text).toContain(rpc);
    }
  });

  it("each example runs as written and succeeds", { timeout: 120_000 }, async () => {
    const outputs: string[] = [];
    for (const example of examples) {
      const command = example.replaceAll("http://127.0.0.1:50051", t.baseUrl);
      const { stdout } = await run("bash", ["-c", command], { cwd: root });
      outputs.push(stdout);
    }
    const all = outputs.join("\n");
    expect(all).toContain("orchestration.state.v1.WorkflowStateService");
    expect(all).toContain('"status": "SERVING"');
    // The saved execution comes back from Get, List and Stream.
    expect(outputs.filter((o) => o.includes('"executionId": "order-42"')).length).toBeGreaterThanOrEqual(4);
    expect(all).toContain('"etag"');
  });
});
