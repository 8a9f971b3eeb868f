import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
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
// "Running several replicas" is one shell session (its blocks share variables: the fencing tokens); the
// other examples run one by one.
const replicasStart = readme.indexOf("\n## Running several replicas\n");
const replicasEnd = readme.indexOf("\n## ", replicasStart + 1);
const inReplicas = (index: number) => index > replicasStart && index < replicasEnd;
const examples = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
  .filter((m) => !inReplicas(m.index))
  .map((m) => m[1]!.replace(/\\\n\s*/g, " ").trim())
  .filter((command) => command.startsWith("npx buf curl"));
const replicasSession = [...readme.slice(replicasStart, replicasEnd).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).join("\n");

// The tenant of the README's examples.
const README_TENANT = "0b8d4f0e-2a51-4c67-9f5e-3c1d2e4f5a60";

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

  it("the walk-through of Running several replicas runs as one shell session: a claim, a renewal, a fenced save, a lost lease", { timeout: 240_000 }, async () => {
    expect(replicasStart).toBeGreaterThan(0);
    // A tenant of its own: the session assumes a tenant with no executions yet (run a second time on the README's
    // tenant, invoice-8 would still be leased from the first run, and the last claim would find nothing).
    const tenant = randomUUID();
    expect(replicasSession).toContain(README_TENANT);
    const script = `set -euo pipefail\n${replicasSession.replaceAll("http://127.0.0.1:50051", t.baseUrl).replaceAll(README_TENANT, tenant)}`;
    const { stdout, stderr } = await run("bash", ["-c", script], { cwd: root });
    // The claims show the leases, A's first renewal and B's save succeed, A's later renewal is lost and its save fenced off.
    expect(stdout).toContain('"owner": "replica-a"');
    expect(stdout).toContain('"owner": "replica-b"');
    expect(stdout).toContain('"renewed": true');
    expect(stdout).toContain('"stepOutputs"');
    expect(stdout).toMatch(/"fencingToken": "\d+",\s*"expireTime"[^}]*\}\s*\}\s*\]\s*\}\s*$|"renewals"/);
    expect(stdout).not.toMatch(/"renewals": \[\s*\{[^}]*"renewed": true[^}]*\}\s*\][\s\S]*"renewals": \[\s*\{[^}]*"renewed": true/);
    expect(stderr).toContain("failed_precondition");
    // buf curl prints the detail's bytes (base64); the reason is in them.
    const error = JSON.parse(stderr.slice(stderr.indexOf("{"))) as { details: { type: string; value: string }[] };
    expect(error.details[0]!.type).toBe("google.rpc.ErrorInfo");
    expect(Buffer.from(error.details[0]!.value, "base64").toString("latin1")).toContain("LEASE_LOST");
    expect(stdout).toContain("replica A lost invoice-7");
    expect(stdout).toContain('"releasedCount": "1"');
    const stored = await run("bash", ["-c", `npx buf curl --protocol grpc --http2-prior-knowledge -H 'x-tenant-id: ${tenant}' -d '{"executionId": "invoice-7"}' ${t.baseUrl}/orchestration.state.v1.WorkflowStateService/GetWorkflowExecution`], { cwd: root });
    // B's completion is stored, not A's stale one, and it ended the lease.
    expect(stored.stdout).toContain('"sent": true');
    expect(stored.stdout).not.toContain('"lease"');
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
