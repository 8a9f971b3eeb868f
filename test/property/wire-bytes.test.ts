import * as http2 from "node:http2";
import { type DescMethod, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { TENANT_HEADER } from "../../src/tenancy/tenant-interceptor.js";
import { backendName } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { requestMessage, runParameters } from "./arbitraries.js";

// Property: raw bytes on the wire, to every RPC of the four services, in every
// protocol's framing (gRPC and gRPC-Web envelopes, valid or broken, with
// random or mutated protobuf payloads; Connect unary and streaming bodies in
// binary and JSON), never get INTERNAL or UNKNOWN, and never take the server
// down. Uses node:http2 directly, so nothing checks the bytes on the way.

const methods: readonly DescMethod[] = [WorkflowStateService, CircuitBreakerService, RoutingAuditService, StatisticsService].flatMap(
  (s) => s.methods,
);

/** How the body is framed, and the content type that says so. */
type Framing = "grpc" | "grpc-web" | "grpc+json" | "connect-proto" | "connect-json";

interface Garbage {
  method: DescMethod;
  framing: Framing;
  body: Uint8Array;
}

function envelope(flags: number, payload: Uint8Array, declared = payload.byteLength): Uint8Array {
  const bytes = new Uint8Array(5 + payload.byteLength);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, flags);
  view.setUint32(1, declared);
  bytes.set(payload, 5);
  return bytes;
}

/** Protobuf-ish payloads: random bytes, or an encoded plausible request with a byte changed or cut. */
function payload(method: DescMethod): fc.Arbitrary<Uint8Array> {
  const encoded = requestMessage(method.input).map((m) => toBinary(method.input, m as never));
  return fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.tuple(encoded, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([bytes, at, value]) => {
      const copy = Uint8Array.from(bytes);
      if (copy.byteLength > 0) copy[at % copy.byteLength] = value;
      return copy;
    }),
    fc.tuple(encoded, fc.nat()).map(([bytes, at]) => bytes.subarray(0, bytes.byteLength === 0 ? 0 : at % bytes.byteLength)),
    // Invalid UTF-8 in field 1 (a string in most requests) and deep nesting.
    fc.constantFrom(Uint8Array.of(0x0a, 0x02, 0xff, 0xfe), Uint8Array.of(0x0a, 0x03, 0xed, 0xa0, 0x80), Uint8Array.of(0x0a, 0x01, 0x00)),
  );
}

const jsonText: fc.Arbitrary<Uint8Array> = fc
  .oneof(
    fc.json(),
    fc.constantFrom('{"agentKey":"\\ud800"}', '{"executionId":"a\\u0000"}', '{"labels":{"\\udc00":"x"}}', "{", "", "null", "[]"),
    fc.string({ unit: "binary" }).map((s) => JSON.stringify({ agentKey: s, executionId: s, decision: { taskId: s } })),
  )
  .map((text) => new TextEncoder().encode(text));

function bodyFor(method: DescMethod, framing: Framing): fc.Arbitrary<Uint8Array> {
  const isStream = method.methodKind !== "unary";
  switch (framing) {
    case "grpc":
    case "grpc-web":
      return fc.oneof(
        payload(method).map((p) => envelope(0, p)),
        fc.tuple(fc.integer({ min: 0, max: 255 }), payload(method)).map(([flags, p]) => envelope(flags, p)),
        fc.tuple(payload(method), fc.integer({ min: 0, max: 2 ** 32 - 1 })).map(([p, declared]) => envelope(0, p, declared)),
        fc.uint8Array({ maxLength: 12 }), // broken envelope
      );
    case "grpc+json":
      return jsonText.map((p) => envelope(0, p));
    case "connect-proto":
      return isStream ? fc.oneof(payload(method).map((p) => envelope(0, p)), fc.uint8Array({ maxLength: 12 })) : payload(method);
    case "connect-json":
      return isStream ? jsonText.map((p) => envelope(0, p)) : fc.oneof(jsonText, fc.uint8Array({ maxLength: 40 }));
  }
}

const garbageArb: fc.Arbitrary<Garbage> = fc
  .tuple(fc.constantFrom(...methods), fc.constantFrom<Framing>("grpc", "grpc-web", "grpc+json", "connect-proto", "connect-json"))
  .chain(([method, framing]) => bodyFor(method, framing).map((body) => ({ method, framing, body })))
  .map((g) =>
    Object.assign(g, {
      [fc.toStringMethod]: () => `${g.method.parent.name}/${g.method.name} ${g.framing} ${Buffer.from(g.body).toString("hex").slice(0, 200)}`,
    }),
  );

function contentType(g: Garbage): string {
  const stream = g.method.methodKind !== "unary";
  switch (g.framing) {
    case "grpc":
      return "application/grpc";
    case "grpc-web":
      return "application/grpc-web+proto";
    case "grpc+json":
      return "application/grpc+json";
    case "connect-proto":
      return stream ? "application/connect+proto" : "application/proto";
    case "connect-json":
      return stream ? "application/connect+json" : "application/json";
  }
}

/** What the server answered: the status code as the protocol carries it, or why there is none. */
interface Answer {
  httpStatus: number;
  code: string;
}

const GRPC_CODES: Record<string, string> = { "2": "unknown", "13": "internal" };

/** Reads the status out of a response of any of the three protocols. */
function statusOf(httpStatus: number, headers: http2.IncomingHttpHeaders, trailers: http2.IncomingHttpHeaders, body: Buffer): string {
  const grpcStatus = trailers["grpc-status"] ?? headers["grpc-status"];
  if (grpcStatus !== undefined) return GRPC_CODES[String(grpcStatus)] ?? `grpc ${grpcStatus}`;
  const text = body.toString("latin1");
  const webStatus = /grpc-status: ?(\d+)/i.exec(text);
  if (webStatus !== null) return GRPC_CODES[webStatus[1]!] ?? `grpc ${webStatus[1]}`;
  const connectCode = /"code":"([a-z_]+)"/.exec(text);
  if (connectCode !== null) return connectCode[1]!;
  // A Connect success, or an HTTP-level refusal (415, 405) before any RPC.
  return httpStatus >= 500 ? `http ${httpStatus}` : `ok/http ${httpStatus}`;
}

describe(`property: garbage bytes on the wire (${backendName})`, () => {
  let server: TestServer;
  let session: http2.ClientHttp2Session;
  beforeAll(async () => {
    server = await startTestServer();
    session = http2.connect(server.baseUrl);
  });
  afterAll(async () => {
    session.close();
    await server.close();
  });

  function send(g: Garbage, tenant: string): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": `/${g.method.parent.typeName}/${g.method.name}`,
        "content-type": contentType(g),
        te: "trailers",
        [TENANT_HEADER]: tenant,
        // A body that happens to be a valid WatchCircuitBreakers request opens an endless stream
        // (a few in each run): the deadline ends it (DEADLINE_EXCEEDED).
        "grpc-timeout": "500m",
        "connect-timeout-ms": "500",
        "connect-protocol-version": "1",
      });
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      req.on("response", (h) => (headers = h));
      req.on("trailers", (t) => (trailers = t));
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("end", () => {
        const httpStatus = Number(headers[":status"]);
        resolve({ httpStatus, code: statusOf(httpStatus, headers, trailers, Buffer.concat(chunks)) });
      });
      req.on("error", reject);
      req.end(g.body);
    });
  }

  it("no body, however malformed, gets INTERNAL or UNKNOWN, and the server keeps serving", async () => {
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(garbageArb, async (g) => {
        const answer = await send(g, newTenant());
        codes.set(answer.code, (codes.get(answer.code) ?? 0) + 1);
        expect(["internal", "unknown", "http 500", "http 502", "http 503"], `answer ${JSON.stringify(answer)}`).not.toContain(answer.code);
      }),
      runParameters(300),
    );
    // The bodies reached the decoder (INVALID_ARGUMENT), not only the HTTP layer.
    expect(codes.get("grpc 3") ?? 0).toBeGreaterThan(10);
    expect(codes.get("invalid_argument") ?? 0).toBeGreaterThan(10);

    // A well-formed call on a fresh connection still works.
    const client = workflowClient(server.baseUrl, newTenant());
    await expect(client.getWorkflowExecution({ executionId: "absent" })).rejects.toSatisfy(
      (e) => ConnectError.from(e).code === Code.NotFound,
    );
  }, 120_000);
});
