import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { python, root, run } from "./support/commands.js";

// Docs match the code: every generation command of docs/clients.md runs as
// written, in a directory holding proto/ and node_modules/ as the page says,
// and writes code that declares the contract's language options.
const doc = readFileSync(path.join(root, "docs/clients.md"), "utf8");
const commands = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)]
  .flatMap((m) => m[1]!.trim().split("\n"))
  .filter((line) => /^(npx buf (generate|build)|protoc|mkdir) /.test(line));
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "clients-doc-"));
  symlinkSync(path.join(root, "proto"), path.join(dir, "proto"), "dir");
  symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"), "dir");
  for (const command of commands) await run("bash", ["-c", command], { cwd: dir });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("docs/clients.md's generation commands", () => {
  it("cover TypeScript, Python (with buf, and with protoc from a descriptor set), Go and Java", () => {
    expect(commands.filter((c) => c.startsWith("npx buf generate proto")).map((c) => /out: (clients\/\w+)/.exec(c)?.[1])).toEqual([
      "clients/ts", "clients/python", "clients/go", "clients/java",
    ]);
    expect(commands.some((c) => c.startsWith("protoc --descriptor_set_in=contract.binpb"))).toBe(true);
  });

  it("write Python that imports, error details included, with Debian's grpcio", async () => {
    for (const out of ["clients/python", "clients/python-protoc"]) {
      const { stdout } = await run(python, ["-c", [
        "import sys; sys.path.insert(0, sys.argv[1])",
        "from orchestration.state.v1 import workflow_state_service_pb2_grpc as g, routing_audit_service_pb2 as a",
        "print(g.WorkflowStateServiceStub.__name__, a.ListRoutingDecisionsRequest(success=False).HasField('success'))",
      ].join("\n"), path.join(dir, out)]);
      expect(stdout.trim()).toBe("WorkflowStateServiceStub True");
    }
    const { stdout } = await run(python, ["-c", "import sys; sys.path.insert(0, sys.argv[1]); from google.rpc import error_details_pb2 as e; print(e.BadRequest.DESCRIPTOR.full_name)", path.join(dir, "clients/python")]);
    expect(stdout.trim()).toBe("google.rpc.BadRequest");
  });

  it("write Go in package statev1 and Java in com.orchestration.state.v1, one class per message", () => {
    const go = readFileSync(path.join(dir, "clients/go/orchestration/state/v1/workflow_state_service_grpc.pb.go"), "utf8");
    expect(go).toMatch(/^package statev1$/m);
    const java = path.join(dir, "clients/java/com/orchestration/state/v1");
    for (const file of ["WorkflowStateServiceGrpc.java", "WorkflowExecution.java", "WorkflowStateServiceProto.java"]) {
      expect(existsSync(path.join(java, file)), file).toBe(true);
    }
    expect(readFileSync(path.join(java, "WorkflowExecution.java"), "utf8")).toMatch(/^package com\.orchestration\.state\.v1;$/m);
    expect(existsSync(path.join(dir, "clients/ts/orchestration/state/v1/workflow_state_service_pb.ts"))).toBe(true);
  });
});
