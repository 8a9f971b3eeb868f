import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { npxBufShortcut, README_ADDRESS, README_TENANT, replicasSession, replicasStart, root } from "./support/readme-examples.js";
import { startTestServer, type TestServer } from "./support/server.js";

// Docs match the code: the walk-through of the README's "Running several
// replicas" runs, as written, as one shell session against a real server
// (only the address and the tenant are changed). The other examples:
// test/readme-examples.test.ts.

const run = promisify(execFile);

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.close();
});

describe("README buf curl examples", () => {
  it("the walk-through of Running several replicas runs as one shell session: a claim, a renewal, a fenced save, a lost lease", { timeout: 240_000 }, async () => {
    expect(replicasStart).toBeGreaterThan(0);
    // A tenant of its own: the session assumes a tenant with no executions yet (run a second time on the README's
    // tenant, invoice-8 would still be leased from the first run, and the last claim would find nothing).
    const tenant = randomUUID();
    expect(replicasSession).toContain(README_TENANT);
    const script = `set -euo pipefail\n${npxBufShortcut}${replicasSession.replaceAll(README_ADDRESS, t.baseUrl).replaceAll(README_TENANT, tenant)}`;
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
});
