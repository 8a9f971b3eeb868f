import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as path from "node:path";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckRequestSchema } from "../../gen/health/v1/health_pb.js";
import {
  GetWorkflowExecutionRequestSchema,
  ListWorkflowExecutionsRequestSchema,
  SaveWorkflowExecutionRequestSchema,
  WorkflowStatus,
} from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { type Config, defaultConfig, loadConfig } from "../../src/config.js";
import { silentLogger } from "../../src/logging/logger.js";
import { type AppServer, createServer } from "../../src/server/server.js";
import { backendName } from "../support/backend.js";
import { connectClient, grpcJsPackage, type Protocol, tenantMetadata, workflowClient } from "../support/clients.js";
import { envelope, type WireAnswer, type WireRequest, wireCall } from "../support/grpc-wire.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

// Unary gRPC calls take the fast path (src/server/grpc-fast-path/);
// everything else goes to Connect's handlers. A client must not be able to
// tell: each request below goes, byte for byte, to a server with the fast path
// and to one with GRPC_FAST_PATH=false (the same database), where Connect's
// adapter serves every call, and the answers (status, headers, trailers with
// grpc-status-details-bin, body) must be the same.

const KEY = "fast-path-test-key-0123456789";
const READ_ONLY_KEY = "fast-path-read-only-key-0123";

const WORKFLOW = "/orchestration.state.v1.WorkflowStateService";
const CHECK = "/grpc.health.v1.Health/Check";

function message<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Buffer {
  return Buffer.from(toBinary(schema, create(schema, init)));
}

/** Our server with GRPC_FAST_PATH=false: every request goes to Connect's adapter. */
async function startConnectOnly(knex: Knex, overrides: Partial<Config>): Promise<{ server: AppServer; baseUrl: string }> {
  const server = createServer({
    knex,
    logger: silentLogger,
    config: { ...defaultConfig, shutdownGraceMs: 2_000, ...overrides, grpcFastPath: false },
  });
  const port = await server.listen(0, "127.0.0.1");
  return { server, baseUrl: `http://127.0.0.1:${port}` };
}

/** A server with the fast path and one without, and an HTTP/2 session to each. */
interface Pair {
  fast: TestServer;
  connect: { server: AppServer; baseUrl: string };
  sessions: [http2.ClientHttp2Session, http2.ClientHttp2Session];
  /** The answers of both servers to the same request. */
  both(req: WireRequest): Promise<[WireAnswer, WireAnswer]>;
  close(): Promise<void>;
}

async function startPair(overrides: Partial<Config>, knex?: Knex): Promise<Pair> {
  const fast = await startTestServer(overrides, knex);
  const connect = await startConnectOnly(fast.knex, overrides);
  const sessions: [http2.ClientHttp2Session, http2.ClientHttp2Session] = [http2.connect(fast.baseUrl), http2.connect(connect.baseUrl)];
  return {
    fast,
    connect,
    sessions,
    both: (req) => Promise.all([wireCall(sessions[0], req), wireCall(sessions[1], req)]),
    async close() {
      for (const s of sessions) s.close();
      await connect.server.shutdown();
      await fast.close();
    },
  };
}

describe(`the gRPC unary fast path answers as Connect does (${backendName})`, () => {
  let open: Pair;
  let small: Pair;
  beforeAll(async () => {
    open = await startPair({});
    small = await startPair({ maxRequestBytes: 1_024 }, open.fast.knex);
  });
  afterAll(async () => {
    await small?.close();
    await open?.close();
  });

  const tenant = newTenant();
  const withTenant = { "x-tenant-id": tenant };
  const cases: [string, WireRequest][] = [
    ["Health/Check: SERVING", { path: CHECK, body: envelope(new Uint8Array(0)) }],
    ["Health/Check of an unknown service: NOT_FOUND", { path: CHECK, body: envelope(message(HealthCheckRequestSchema, { service: "nope" })) }],
    [
      "a client accepting gzip: grpc-encoding in the response headers",
      { path: CHECK, headers: { "grpc-accept-encoding": "identity,deflate,gzip" }, body: envelope(new Uint8Array(0)) },
    ],
    ["content-type application/grpc+proto", { path: CHECK, headers: { "content-type": "application/grpc+proto" }, body: envelope(new Uint8Array(0)) }],
    ["grpc-encoding: identity", { path: CHECK, headers: { "grpc-encoding": "identity" }, body: envelope(new Uint8Array(0)) }],
    ["a deadline far enough away", { path: CHECK, headers: { "grpc-timeout": "10S" }, body: envelope(new Uint8Array(0)) }],
    [
      "ListWorkflowExecutions of an empty tenant: the database, through the tenancy interceptor",
      { path: `${WORKFLOW}/ListWorkflowExecutions`, headers: withTenant, body: envelope(message(ListWorkflowExecutionsRequestSchema, {})) },
    ],
    [
      "GetWorkflowExecution of an absent execution: NOT_FOUND",
      { path: `${WORKFLOW}/GetWorkflowExecution`, headers: withTenant, body: envelope(message(GetWorkflowExecutionRequestSchema, { executionId: "absent" })) },
    ],
    [
      "a save with bad fields: INVALID_ARGUMENT with a BadRequest detail",
      {
        path: `${WORKFLOW}/SaveWorkflowExecution`,
        headers: withTenant,
        body: envelope(message(SaveWorkflowExecutionRequestSchema, { execution: { executionId: "", workflowName: "", status: WorkflowStatus.RUNNING } })),
      },
    ],
    [
      "no x-tenant-id: INVALID_ARGUMENT naming the header",
      { path: `${WORKFLOW}/GetWorkflowExecution`, body: envelope(message(GetWorkflowExecutionRequestSchema, { executionId: "e" })) },
    ],
    [
      "two x-tenant-id values: INVALID_ARGUMENT",
      {
        path: `${WORKFLOW}/GetWorkflowExecution`,
        headers: { "x-tenant-id": [tenant, newTenant()] },
        body: envelope(message(GetWorkflowExecutionRequestSchema, { executionId: "e" })),
      },
    ],
    ["an empty body: UNIMPLEMENTED (no message)", { path: CHECK, body: new Uint8Array(0) }],
    ["a body shorter than its envelope says: INVALID_ARGUMENT", { path: CHECK, body: envelope(Uint8Array.of(0x0a), 0, 10) }],
    ["half an envelope header: INVALID_ARGUMENT", { path: CHECK, body: Uint8Array.of(0, 0, 0) }],
    [
      "bytes after the message: INVALID_ARGUMENT",
      { path: CHECK, body: Buffer.concat([envelope(new Uint8Array(0)), Buffer.from([0, 0])]) },
    ],
    ["the compressed flag without grpc-encoding: INVALID_ARGUMENT", { path: CHECK, body: envelope(Uint8Array.of(0x0a, 0x00), 1) }],
    ["bytes that are not protobuf: INVALID_ARGUMENT", { path: CHECK, body: envelope(Uint8Array.of(0xff, 0xff, 0xff)) }],
    ["a string that is not UTF-8: INVALID_ARGUMENT", { path: CHECK, body: envelope(Uint8Array.of(0x0a, 0x02, 0xff, 0xfe)) }],
    [
      "two messages: UNIMPLEMENTED",
      { path: CHECK, body: Buffer.concat([envelope(new Uint8Array(0)), envelope(new Uint8Array(0))]) },
    ],
    [
      "two messages, the second not protobuf: INVALID_ARGUMENT",
      { path: CHECK, body: Buffer.concat([envelope(new Uint8Array(0)), envelope(Uint8Array.of(0xff))]) },
    ],
    // Not the fast path's (Connect answers them on both servers):
    ["an invalid grpc-timeout", { path: CHECK, headers: { "grpc-timeout": "soon" }, body: envelope(new Uint8Array(0)) }],
    ["a gzip-compressed request", { path: CHECK, headers: { "grpc-encoding": "gzip" }, body: envelope(new Uint8Array(0)) }],
    ["an unknown compression", { path: CHECK, headers: { "grpc-encoding": "zstd" }, body: envelope(new Uint8Array(0)) }],
    ["application/grpc+json", { path: CHECK, headers: { "content-type": "application/grpc+json" }, body: envelope(Buffer.from("{}")) }],
    ["an unknown method", { path: "/grpc.health.v1.Health/Nope", body: envelope(new Uint8Array(0)) }],
    ["GET", { path: CHECK, method: "GET", body: new Uint8Array(0) }],
  ];
  for (const [name, req] of cases) {
    it(name, async () => {
      const [fast, connect] = await open.both(req);
      expect(fast).toEqual(connect);
    });
  }

  it("the gRPC unary requests above took the fast path; the others, and nothing on the server without it, did not", async () => {
    const before = open.fast.server.stats().grpcFastPathCalls;
    for (const [, req] of cases) await open.both(req);
    // The last six are Connect's.
    expect(open.fast.server.stats().grpcFastPathCalls - before).toBe(cases.length - 6);
    expect(open.connect.server.stats().grpcFastPathCalls).toBe(0);
  });

  describe("MAX_REQUEST_BYTES (1 KiB here)", () => {
    const big = message(HealthCheckRequestSchema, { service: "x".repeat(2_000) });
    const sizes: [string, WireRequest][] = [
      ["a message above the limit: RESOURCE_EXHAUSTED", { path: CHECK, body: envelope(big) }],
      ["an envelope declaring 4 GiB, with 3 bytes: RESOURCE_EXHAUSTED at once", { path: CHECK, body: envelope(Uint8Array.of(1, 2, 3), 0, 2 ** 32 - 1) }],
      ["a message at the limit is read", { path: CHECK, body: envelope(message(HealthCheckRequestSchema, { service: "x".repeat(1_021) })) }],
      ["a second message above the limit: RESOURCE_EXHAUSTED", { path: CHECK, body: Buffer.concat([envelope(new Uint8Array(0)), envelope(big)]) }],
    ];
    for (const [name, req] of sizes) {
      it(name, async () => {
        const [fast, connect] = await small.both(req);
        expect(fast).toEqual(connect);
      });
    }

    it("a large message sent in many chunks: RESOURCE_EXHAUSTED from both, and the servers keep serving", async () => {
      const huge = message(HealthCheckRequestSchema, { service: "y".repeat(3 * 1024 * 1024) });
      const [fast, connect] = await small.both({ path: CHECK, body: envelope(huge) });
      expect(fast).toEqual(connect);
      expect(fast.trailers["grpc-status"]).toBe(String(Code.ResourceExhausted));
      const [ok] = await small.both({ path: CHECK, body: envelope(new Uint8Array(0)) });
      expect(ok.trailers["grpc-status"]).toBe("0");
    });

    it("a large message within the default limit is read whole, however it is chunked", async () => {
      // 3 MiB of context, and an execution id that is invalid: the answer names it.
      const save = message(SaveWorkflowExecutionRequestSchema, {
        execution: { executionId: "", workflowName: "w", status: WorkflowStatus.RUNNING, context: { blob: "z".repeat(3 * 1024 * 1024) } },
      });
      const [fast, connect] = await open.both({ path: `${WORKFLOW}/SaveWorkflowExecution`, headers: withTenant, body: envelope(save) });
      expect(fast).toEqual(connect);
      expect(fast.trailers["grpc-status"]).toBe(String(Code.InvalidArgument));
      expect(decodeURIComponent(fast.trailers["grpc-message"]!)).toMatch(/^execution\.execution_id: /);
    });
  });

  describe("with API keys (health and the services need one)", () => {
    let keyed: Pair;
    const keyTenant = newTenant();
    beforeAll(async () => {
      keyed = await startPair(
        {
          authKeys: JSON.stringify([
            { id: "writer", tenant: keyTenant, key: KEY },
            { id: "reader", tenant: keyTenant, key: READ_ONLY_KEY, readOnly: true },
          ]),
          authPublicHealth: false,
        },
        open.fast.knex,
      );
    });
    afterAll(async () => {
      await keyed?.close();
    });

    const save = envelope(message(SaveWorkflowExecutionRequestSchema, { execution: { executionId: "", workflowName: "w", status: WorkflowStatus.RUNNING } }));
    const keyCases: [string, WireRequest][] = [
      ["no key: UNAUTHENTICATED", { path: CHECK, body: envelope(new Uint8Array(0)) }],
      ["an unknown key: UNAUTHENTICATED", { path: CHECK, headers: { authorization: "Bearer not-a-key-at-all-0000" }, body: envelope(new Uint8Array(0)) }],
      ["a key: SERVING", { path: CHECK, headers: { authorization: `Bearer ${KEY}` }, body: envelope(new Uint8Array(0)) }],
      [
        "a read-only key writing: PERMISSION_DENIED",
        { path: `${WORKFLOW}/SaveWorkflowExecution`, headers: { authorization: `Bearer ${READ_ONLY_KEY}` }, body: save },
      ],
      [
        "a key naming another tenant: PERMISSION_DENIED",
        { path: `${WORKFLOW}/SaveWorkflowExecution`, headers: { authorization: `Bearer ${KEY}`, "x-tenant-id": newTenant() }, body: save },
      ],
      [
        "a key, its tenant implied: the request reaches validation",
        { path: `${WORKFLOW}/SaveWorkflowExecution`, headers: { authorization: `bearer  ${KEY}` }, body: save },
      ],
    ];
    for (const [name, req] of keyCases) {
      it(name, async () => {
        const [fast, connect] = await keyed.both(req);
        expect(fast).toEqual(connect);
      });
    }
  });
});

describe(`a server with the fast path still serves every protocol and streams (${backendName})`, () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ streamBatchSize: 2 });
  });
  afterAll(async () => {
    await t.close();
  });

  it.each<Protocol>(["grpc", "grpc-web", "connect"])("over %s: unary calls, errors and a server stream; only gRPC unary calls take the fast path", async (protocol) => {
    const tenant = newTenant();
    const client = workflowClient(t.baseUrl, tenant, protocol);
    const before = t.server.stats().grpcFastPathCalls;
    for (const id of ["a", "b", "c"]) {
      await client.saveWorkflowExecution({ execution: { executionId: id, workflowName: "w", status: WorkflowStatus.RUNNING } });
    }
    const got = await client.getWorkflowExecution({ executionId: "b" });
    expect(got.execution?.executionId).toBe("b");
    const err = await client.getWorkflowExecution({ executionId: "absent" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
    const streamed: string[] = [];
    for await (const res of client.streamIncompleteWorkflows({})) streamed.push(res.execution!.executionId);
    expect(streamed.sort()).toEqual(["a", "b", "c"]);
    const health = connectClient(Health, t.baseUrl, undefined, protocol);
    expect((await health.check({})).status).toBe(1);
    // 3 saves, 2 gets, 1 check; the stream is Connect's.
    expect(t.server.stats().grpcFastPathCalls - before).toBe(protocol === "grpc" ? 6 : 0);
    expect(t.server.stats().calls).toBe(0);
  });

  it("grpc-js: unary calls with metadata, errors with details, and a stream", async () => {
    const pkg = grpcJsPackage();
    const v1 = ((pkg.orchestration as grpc.GrpcObject).state as grpc.GrpcObject).v1 as grpc.GrpcObject;
    const Ctor = v1.WorkflowStateService as grpc.ServiceClientConstructor;
    const client = new Ctor(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure());
    type Cb = (err: grpc.ServiceError | null, res: Record<string, unknown>) => void;
    const unary = (method: string, req: object, md: grpc.Metadata) =>
      new Promise<Record<string, unknown>>((resolve, reject) =>
        (client[method] as (r: object, m: grpc.Metadata, cb: Cb) => void).call(client, req, md, (err, res) => (err ? reject(err) : resolve(res))),
      );
    try {
      const tenant = newTenant();
      const before = t.server.stats().grpcFastPathCalls;
      await unary("SaveWorkflowExecution", { execution: { execution_id: "g", workflow_name: "w", status: "WORKFLOW_STATUS_RUNNING" } }, tenantMetadata(tenant));
      const got = await unary("GetWorkflowExecution", { execution_id: "g" }, tenantMetadata(tenant));
      expect((got.execution as Record<string, unknown>).execution_id).toBe("g");
      const bad = (await unary("SaveWorkflowExecution", { execution: { execution_id: "" } }, tenantMetadata(tenant)).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
      // The BadRequest detail arrives in grpc-status-details-bin.
      expect(bad.metadata.get("grpc-status-details-bin")).toHaveLength(1);
      const otherTenant = (await unary("GetWorkflowExecution", { execution_id: "g" }, tenantMetadata(newTenant())).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(otherTenant.code).toBe(grpc.status.NOT_FOUND);
      const streamed = await new Promise<number>((resolve, reject) => {
        let n = 0;
        const s = (client.StreamIncompleteWorkflows as (r: object, m: grpc.Metadata) => grpc.ClientReadableStream<unknown>).call(client, {}, tenantMetadata(tenant));
        s.on("data", () => n++);
        s.on("error", reject);
        s.on("end", () => resolve(n));
      });
      expect(streamed).toBe(1);
      expect(t.server.stats().grpcFastPathCalls - before).toBe(4);
    } finally {
      client.close();
    }
  });

  it("a grpc-js call cancelled while its handler runs leaves nothing in flight, and the server keeps answering", async () => {
    const pkg = grpcJsPackage();
    const v1 = ((pkg.orchestration as grpc.GrpcObject).state as grpc.GrpcObject).v1 as grpc.GrpcObject;
    const Ctor = v1.WorkflowStateService as grpc.ServiceClientConstructor;
    const client = new Ctor(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure());
    try {
      const tenant = newTenant();
      const calls = Array.from({ length: 20 }, (_, i) =>
        new Promise<grpc.status>((resolve) => {
          const call = (client.SaveWorkflowExecution as (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall).call(
            client,
            { execution: { execution_id: `x${i}`, workflow_name: "w", status: "WORKFLOW_STATUS_RUNNING" } },
            tenantMetadata(tenant),
            (e) => resolve(e === null ? grpc.status.OK : e.code),
          );
          setTimeout(() => call.cancel(), i % 5);
        }),
      );
      const codes = await Promise.all(calls);
      expect(codes.every((c) => c === grpc.status.OK || c === grpc.status.CANCELLED)).toBe(true);
      await expect.poll(() => t.server.stats().calls).toBe(0);
      const health = connectClient(Health, t.baseUrl, undefined, "grpc");
      expect((await health.check({})).status).toBe(1);
    } finally {
      client.close();
    }
  });
});

describe("GRPC_FAST_PATH", () => {
  it("is on unless set to false; any other value stops the server, naming the variable", () => {
    expect(loadConfig({}).grpcFastPath).toBe(true);
    expect(loadConfig({ GRPC_FAST_PATH: "true" }).grpcFastPath).toBe(true);
    expect(loadConfig({ GRPC_FAST_PATH: "false" }).grpcFastPath).toBe(false);
    expect(() => loadConfig({ GRPC_FAST_PATH: "off" })).toThrow(/^GRPC_FAST_PATH must be true or false, got "off"$/);
  });

  it("the README's configuration table documents it with its default", () => {
    const readme = readFileSync(path.resolve(import.meta.dirname, "../../README.md"), "utf8");
    expect(readme).toMatch(/^\| `GRPC_FAST_PATH` \| `true` \| .*`false`.*\|$/m);
  });
});
