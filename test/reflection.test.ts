import { execFile } from "node:child_process";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { fromBinary, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/health/v1/health_pb.js";
import { CircuitBreakerService } from "../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService } from "../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { errorDetailFiles } from "../src/errors/error-detail-files.js";
import { createHealthService } from "../src/health/health-service.js";
import { createReflectionServices } from "../src/reflection/reflection-service.js";

const execFileAsync = promisify(execFile);

const APP_SERVICES: DescService[] = [
  WorkflowStateService,
  CircuitBreakerService,
  RoutingAuditService,
  StatisticsService,
];
const ALL_SERVICE_NAMES = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "orchestration.state.v1.CircuitBreakerService",
  "orchestration.state.v1.RoutingAuditService",
  "orchestration.state.v1.StatisticsService",
  "orchestration.state.v1.WorkflowStateService",
];
const WORKFLOW_FILE = "orchestration/state/v1/workflow_state_service.proto";

let server: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();
let baseUrl: string;

beforeAll(async () => {
  const health = createHealthService(APP_SERVICES.map((s) => s.typeName));
  health.setAll(HealthCheckResponse_ServingStatus.SERVING);
  const reflection = createReflectionServices([...APP_SERVICES, Health], errorDetailFiles);
  server = http2.createServer(
    connectNodeAdapter({
      routes: (router) => {
        // Empty implementations: Connect answers UNIMPLEMENTED, which is all
        // the reflection tests need from these.
        for (const service of APP_SERVICES) router.service(service, {});
        router.service(Health, health.impl);
        router.service(v1.ServerReflection, reflection.v1);
        router.service(v1alpha.ServerReflection, reflection.v1alpha);
      },
    }),
  );
  // server.close() waits for open HTTP/2 sessions; afterAll closes them.
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const session of sessions) session.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

type RequestInit = MessageInitShape<typeof v1.ServerReflectionRequestSchema>;

// The two versions only differ in type names, so one helper speaks both and
// the tests below run against each.
const versions = [
  { name: "v1", service: v1.ServerReflection },
  { name: "v1alpha", service: v1alpha.ServerReflection },
] as const;

type Version = (typeof versions)[number];

/** Sends all requests on one stream and returns the responses in order. */
async function reflect(version: Version, requests: RequestInit[]) {
  const transport = createGrpcTransport({ baseUrl });
  // Both services have identical message shapes, so a v1 init works for both.
  const client = createClient(version.service as typeof v1.ServerReflection, transport);
  async function* send() {
    yield* requests;
  }
  const responses: v1.ServerReflectionResponse[] = [];
  for await (const res of client.serverReflectionInfo(send(), { timeoutMs: 5000 })) {
    responses.push(res);
  }
  expect(responses).toHaveLength(requests.length);
  // Proves the request really went to this version's service.
  for (const res of responses) {
    expect(res.$typeName).toBe(`grpc.reflection.${version.name}.ServerReflectionResponse`);
  }
  return responses;
}

async function reflectOne(version: Version, request: RequestInit) {
  return (await reflect(version, [request]))[0]!;
}

function decodeFiles(res: v1.ServerReflectionResponse): FileDescriptorProto[] {
  expect(res.messageResponse.case).toBe("fileDescriptorResponse");
  if (res.messageResponse.case !== "fileDescriptorResponse") return [];
  return res.messageResponse.value.fileDescriptorProto.map((bytes) =>
    fromBinary(FileDescriptorProtoSchema, bytes),
  );
}

function expectError(res: v1.ServerReflectionResponse, code: Code): void {
  expect(res.messageResponse.case).toBe("errorResponse");
  if (res.messageResponse.case !== "errorResponse") return;
  expect(res.messageResponse.value.errorCode).toBe(code);
  expect(res.messageResponse.value.errorMessage).not.toBe("");
}

describe.each(versions)("ServerReflection $name", (version) => {
  it("lists every served service, health and reflection included", async () => {
    const res = await reflectOne(version, {
      messageRequest: { case: "listServices", value: "" },
    });
    expect(res.messageResponse.case).toBe("listServicesResponse");
    if (res.messageResponse.case !== "listServicesResponse") return;
    expect(res.messageResponse.value.service.map((s) => s.name)).toEqual(ALL_SERVICE_NAMES);
  });

  it("answers file_containing_symbol for a method with the file and its imports", async () => {
    const request = {
      host: "state.example:443",
      messageRequest: {
        case: "fileContainingSymbol",
        value: "orchestration.state.v1.WorkflowStateService.SaveWorkflowExecution",
      },
    } as const;
    const res = await reflectOne(version, request);
    expect(res.validHost).toBe("state.example:443");
    expect(res.originalRequest?.host).toBe("state.example:443");
    expect(res.originalRequest?.messageRequest).toEqual(request.messageRequest);

    const files = decodeFiles(res);
    const names = files.map((f) => f.name);
    // The requested file comes first, then every import, each exactly once.
    expect(names[0]).toBe(WORKFLOW_FILE);
    expect(new Set(names).size).toBe(names.length);
    expect([...names].sort()).toEqual(
      [
        WORKFLOW_FILE,
        "google/protobuf/duration.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
      ].sort(),
    );

    const file = files[0]!;
    expect(file.package).toBe("orchestration.state.v1");
    expect(file.dependency).toEqual(
      expect.arrayContaining([
        "google/protobuf/duration.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
      ]),
    );
    const method = file.service
      .find((s) => s.name === "WorkflowStateService")
      ?.method.find((m) => m.name === "SaveWorkflowExecution");
    expect(method?.inputType).toBe(".orchestration.state.v1.SaveWorkflowExecutionRequest");
    expect(method?.outputType).toBe(".orchestration.state.v1.SaveWorkflowExecutionResponse");
    expect(file.messageType.map((m) => m.name)).toContain("SaveWorkflowExecutionRequest");

    const timestamp = files.find((f) => f.name === "google/protobuf/timestamp.proto");
    expect(timestamp?.messageType.map((m) => m.name)).toEqual(["Timestamp"]);
  });

  it.each([
    ["service", "orchestration.state.v1.CircuitBreakerService", "orchestration/state/v1/circuit_breaker_service.proto"],
    ["method", "orchestration.state.v1.StatisticsService.GetAgentStatistics", "orchestration/state/v1/statistics_service.proto"],
    ["message", "orchestration.state.v1.RoutingDecision", "orchestration/state/v1/routing_audit_service.proto"],
    ["field", "orchestration.state.v1.WorkflowExecution.execution_id", WORKFLOW_FILE],
    ["enum", "orchestration.state.v1.WorkflowStatus", WORKFLOW_FILE],
    ["enum value", "orchestration.state.v1.WORKFLOW_STATUS_RUNNING", WORKFLOW_FILE],
    ["map entry type", "orchestration.state.v1.WorkflowExecution.LabelsEntry", WORKFLOW_FILE],
    ["nested enum", "grpc.health.v1.HealthCheckResponse.ServingStatus", "health/v1/health.proto"],
    ["nested enum value", "grpc.health.v1.HealthCheckResponse.SERVING", "health/v1/health.proto"],
    ["well-known type", "google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
    ["oneof", "google.protobuf.Value.kind", "google/protobuf/struct.proto"],
    ["reflection itself", `grpc.reflection.${version.name}.ServerReflection`, `grpc/reflection/${version.name}/reflection.proto`],
    // Error details: no RPC names them, yet clients decode them by type name.
    ["error detail", "google.rpc.BadRequest", "google/rpc/error_details.proto"],
    ["nested error detail", "google.rpc.BadRequest.FieldViolation", "google/rpc/error_details.proto"],
    ["error detail of a lost lease", "google.rpc.ErrorInfo", "google/rpc/error_details.proto"],
  ])("finds the file declaring: %s", async (_kind, symbol, file) => {
    const res = await reflectOne(version, {
      messageRequest: { case: "fileContainingSymbol", value: symbol },
    });
    expect(decodeFiles(res)[0]?.name).toBe(file);
  });

  it("answers file_by_filename with the file and its imports", async () => {
    const [health, timestamp] = await reflect(version, [
      { messageRequest: { case: "fileByFilename", value: "health/v1/health.proto" } },
      { messageRequest: { case: "fileByFilename", value: "google/protobuf/timestamp.proto" } },
    ]);
    const healthFile = decodeFiles(health!);
    expect(healthFile.map((f) => f.name)).toEqual(["health/v1/health.proto"]);
    expect(healthFile[0]!.service[0]!.method.map((m) => m.name)).toEqual(["Check", "Watch", "List"]);
    expect(decodeFiles(timestamp!).map((f) => f.name)).toEqual(["google/protobuf/timestamp.proto"]);
  });

  it("answers NOT_FOUND in-band and keeps the stream open", async () => {
    const responses = await reflect(version, [
      { messageRequest: { case: "fileContainingSymbol", value: "orchestration.state.v1.Nope" } },
      { messageRequest: { case: "fileByFilename", value: "nope.proto" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "google.protobuf.MethodOptions", extensionNumber: 50000 },
        },
      },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "orchestration.state.v1.Nope" } },
      { messageRequest: { case: "listServices", value: "" } },
    ]);
    for (const res of responses.slice(0, 4)) expectError(res, Code.NotFound);
    // Each answer echoes the request it answers, in order.
    expect(responses.map((r) => r.originalRequest?.messageRequest.case)).toEqual([
      "fileContainingSymbol",
      "fileByFilename",
      "fileContainingExtension",
      "allExtensionNumbersOfType",
      "listServices",
    ]);
    expect(responses[4]!.messageResponse.case).toBe("listServicesResponse");
  });

  it("answers all_extension_numbers_of_type for a known message with an empty list", async () => {
    const res = await reflectOne(version, {
      messageRequest: {
        case: "allExtensionNumbersOfType",
        value: "orchestration.state.v1.WorkflowExecution",
      },
    });
    expect(res.messageResponse.case).toBe("allExtensionNumbersResponse");
    if (res.messageResponse.case !== "allExtensionNumbersResponse") return;
    expect(res.messageResponse.value.baseTypeName).toBe("orchestration.state.v1.WorkflowExecution");
    expect(res.messageResponse.value.extensionNumber).toEqual([]);
  });

  it("answers INVALID_ARGUMENT for a request without message_request", async () => {
    expectError(await reflectOne(version, { host: "h" }), Code.InvalidArgument);
  });
});

describe("buf curl, an independent reflection client", () => {
  const buf = "node_modules/.bin/buf";

  /** Runs buf curl against the test server; never blocks the event loop. */
  async function bufCurl(args: string[]) {
    try {
      const { stdout, stderr } = await execFileAsync(
        buf,
        ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args],
        { timeout: 8000 },
      );
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }

  it.each(["grpc-v1", "grpc-v1alpha"])("lists services over %s", async (protocol) => {
    const out = await bufCurl(["--reflect-protocol", protocol, "--list-services", baseUrl]);
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    expect(out.stdout.trim().split("\n").sort()).toEqual(ALL_SERVICE_NAMES);
  });

  it.each(["grpc-v1", "grpc-v1alpha"])("lists methods over %s", async (protocol) => {
    const out = await bufCurl(["--reflect-protocol", protocol, "--list-methods", baseUrl]);
    expect(out.code).toBe(0);
    const methods = out.stdout.trim().split("\n");
    expect(methods).toEqual(
      expect.arrayContaining([
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution",
        "orchestration.state.v1.CircuitBreakerService/ResetCircuitBreaker",
        "orchestration.state.v1.RoutingAuditService/RecordRoutingDecision",
        "orchestration.state.v1.StatisticsService/GetAgentStatistics",
      ]),
    );
  });

  it("calls Health/Check using only the schema it got by reflection", async () => {
    const out = await bufCurl(["-d", '{"service": ""}', `${baseUrl}/grpc.health.v1.Health/Check`]);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ status: "SERVING" });
  });

  it("encodes a request of our own schema from reflection", async () => {
    const url = `${baseUrl}/orchestration.state.v1.WorkflowStateService/SaveWorkflowExecution`;
    // A valid body (nested message, enum name, Timestamp, Struct) is encoded
    // and sent; the empty implementation answers UNIMPLEMENTED.
    const valid = await bufCurl([
      "-d",
      JSON.stringify({
        execution: {
          executionId: "e1",
          status: "WORKFLOW_STATUS_RUNNING",
          startedAt: "2024-01-01T00:00:00Z",
          context: { a: 1 },
        },
      }),
      url,
    ]);
    expect(valid.stderr).toMatch(/unimplemented/i);
    // An unknown field is rejected by buf itself, which proves it resolved
    // the message schema through reflection.
    const invalid = await bufCurl(["-d", '{"noSuchField": 1}', url]);
    expect(invalid.code).not.toBe(0);
    expect(invalid.stderr).toMatch(/noSuchField/);
    expect(invalid.stderr).not.toMatch(/unimplemented/i);
  });
});
