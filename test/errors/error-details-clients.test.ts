import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { workflowClient } from "../support/clients.js";
import { errorOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// What clients without our generated code see of an INVALID_ARGUMENT's
// google.rpc.BadRequest detail. Over the Connect protocol the server sends each
// detail's JSON form too, which buf curl prints as "debug". Over gRPC a detail
// is a type name and bytes: grpcurl resolves the type through reflection
// (buf curl does not: it prints the bytes), which needs reflection to serve
// google/rpc/error_details.proto although no RPC names its types.
const execFileAsync = promisify(execFile);
let server: TestServer;
const tenant = newTenant();
const invalidSave = { execution: { executionId: "", workflowName: "w" } };

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

describe("error details for clients without generated code", () => {
  it("buf curl prints the BadRequest detail decoded, naming the field (Connect protocol)", async () => {
    const out = await execFileAsync(
      "node_modules/.bin/buf",
      [
        "curl", "--protocol", "connect", "--http2-prior-knowledge",
        "-H", `x-tenant-id: ${tenant}`,
        "-d", JSON.stringify(invalidSave),
        `${server.baseUrl}/orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution`,
      ],
      { timeout: 15_000 },
    ).then(
      () => { throw new Error("buf curl succeeded, but INVALID_ARGUMENT was expected"); },
      (err: { code?: number; stderr?: string }) => err,
    );
    // buf curl exits with the gRPC code times 8 (INVALID_ARGUMENT: 24).
    expect(out.code).toBe(Code.InvalidArgument * 8);
    const printed = JSON.parse(out.stderr ?? "") as {
      code: string;
      details: { type: string; debug?: { fieldViolations: { field: string; description: string }[] } }[];
    };
    expect(printed.code).toBe("invalid_argument");
    expect(printed.details).toHaveLength(1);
    expect(printed.details[0]!.type).toBe("google.rpc.BadRequest");
    expect(printed.details[0]!.debug?.fieldViolations).toEqual([
      { field: "execution.execution_id", description: "must be 1-100 characters, got 0" },
      expect.objectContaining({ field: "execution.status" }),
    ]);
  });

  it("a gRPC client decodes the detail with the type found by reflection, as grpcurl does", async () => {
    // Over gRPC the detail arrives as a type name and bytes only.
    const err = await errorOf(workflowClient(server.baseUrl, tenant).saveWorkflowExecution(invalidSave));
    expect(err.code).toBe(Code.InvalidArgument);
    const [first] = err.details;
    expect(first && "type" in first && first.type).toBe("google.rpc.BadRequest");
    if (!first || !("type" in first)) return;
    const detail = first;

    // Ask the server's reflection for the file declaring the type, build a
    // registry from what it answers alone, and decode the bytes with it.
    const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl: server.baseUrl }));
    async function* ask() {
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: detail.type } };
    }
    const answers = [];
    for await (const answer of reflection.serverReflectionInfo(ask(), { timeoutMs: 10_000 })) answers.push(answer);
    const response = answers[0]?.messageResponse;
    expect(response?.case).toBe("fileDescriptorResponse");
    if (response?.case !== "fileDescriptorResponse") return;
    // The answer holds the declaring file first, then its imports.
    const [declaring, ...imports] = response.value.fileDescriptorProto.map((bytes) =>
      fromBinary(FileDescriptorProtoSchema, bytes),
    );
    const registry = createFileRegistry(declaring!, (name) => imports.find((f) => f.name === name));
    const schema = registry.getMessage(detail.type);
    expect(schema).toBeDefined();
    const decoded = fromBinary(schema!, detail.value) as unknown as { fieldViolations: { field: string }[] };
    expect(decoded.fieldViolations.map((v) => v.field)).toEqual(["execution.execution_id", "execution.status"]);
  });
});
