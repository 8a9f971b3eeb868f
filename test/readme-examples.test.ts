import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService } from "../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RetentionService } from "../gen/orchestration/state/v1/retention_service_pb.js";
import { RoutingAuditService } from "../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../gen/orchestration/state/v1/statistics_service_pb.js";
import { examples, npxBufShortcut, README_ADDRESS, readme, replicasSession, root } from "./support/readme-examples.js";
import { startTestServer, type TestServer } from "./support/server.js";

// Docs match the code: every `buf curl` example of the README runs, as
// written, against a real server (only the address is changed to the test
// server's), each service's in the order the README gives them. The
// walk-through of "Running several replicas": test/readme-replicas.test.ts.

const run = promisify(execFile);

/**
 * The examples that build on each other, in README order: those of one
 * service (a save before its get), and statistics after the routing
 * decisions that update them ("updateStatistics": true). Health and
 * reflection need nothing. Chains run side by side: each example starts buf
 * (through npx, the first), and one after the other they took a minute.
 */
function chainOf(command: string): string {
  const service = /orchestration\.state\.v1\.(\w+)\//.exec(command)?.[1] ?? "server";
  return service === StatisticsService.name ? RoutingAuditService.name : service;
}

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
    for (const rpc of ["ClaimIncompleteWorkflows", "RenewLeases", "ReleaseLeases", "SaveWorkflowExecution"]) {
      expect(replicasSession).toContain(`WorkflowStateService/${rpc}`);
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

  it("each example runs as written and succeeds", { timeout: 300_000 }, async () => {
    const outputs: string[] = [];
    const chains = new Map<string, number[]>();
    for (const [i, example] of examples.entries()) chains.set(chainOf(example), [...(chains.get(chainOf(example)) ?? []), i]);
    await Promise.all(
      [...chains.values()].map(async (chain) => {
        for (const i of chain) {
          const command = examples[i]!.replaceAll(README_ADDRESS, t.baseUrl);
          // The first through npx itself, the others through the same buf without npm's start-up.
          const { stdout } = await run("bash", ["-c", i === 0 ? command : npxBufShortcut + command], { cwd: root });
          outputs[i] = stdout;
        }
      }),
    );
    const all = outputs.join("\n");
    expect(all).toContain("orchestration.state.v1.WorkflowStateService");
    expect(all).toContain('"status": "SERVING"');
    // The saved execution comes back from Get, List and Stream.
    expect(outputs.filter((o) => o.includes('"executionId": "order-42"')).length).toBeGreaterThanOrEqual(4);
    expect(all).toContain('"etag"');
  });
});
