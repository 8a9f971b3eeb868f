import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService } from "../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RetentionService } from "../gen/orchestration/state/v1/retention_service_pb.js";
import { RoutingAuditService } from "../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../gen/orchestration/state/v1/statistics_service_pb.js";
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

  it("the README has an example for every RPC of RoutingAuditService, StatisticsService and RetentionService", () => {
    const text = examples.join("\n");
    for (const service of [RoutingAuditService, StatisticsService, RetentionService]) {
      for (const method of service.methods) expect(text).toContain(`${service.typeName}/${method.name}`);
    }
  });

  it("the README runs an example of every unary CircuitBreakerService RPC and shows WatchCircuitBreakers", () => {
    const text = examples.join("\n");
    for (const method of CircuitBreakerService.methods) {
      const name = `${CircuitBreakerService.typeName}/${method.name}`;
      // A watch never ends by itself, so its example is shown with `timeout`, not run.
      expect(method.methodKind === "unary" ? text : readme, name).toContain(name);
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
