import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import knexFactory from "knex";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema } from "../../gen/health/v1/health_pb.js";
import * as connectInternals from "../../src/server/grpc-fast-path/connect-internals.js";
import { errorFromResetCode } from "../../src/server/grpc-fast-path/reset-codes.js";
import { requestDecodeError } from "../../src/errors/request-decoding.js";

// Some of our code leans on what a package does not promise: the gRPC unary
// fast path (src/server/grpc-fast-path/, the one importer of Connect's
// @private protocol helpers: its connect-internals.ts) on Connect's protocol
// helpers, connect-node's reset codes and node:http2's stream listener, the
// pipelined tenant unit (src/tenancy/pipelined-unit.ts) on Knex's client and
// pg's Query hooks and Connection (pg-protocol's messages). Those
// packages are pinned to exact versions in package.json, and this test fails
// loudly when an upgrade moves one (the behaviour tests of each module would
// fail too, but less clearly): upgrade on purpose, read the changed internals,
// then update the pin here and in package.json together.
const root = path.resolve(import.meta.dirname, "../..");
const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { dependencies: Record<string, string> };

const PINNED = {
  "@connectrpc/connect": "2.1.2",
  "@connectrpc/connect-node": "2.1.2",
  knex: "3.3.0",
  "knex-pglite": "0.14.0",
  pg: "8.23.1",
} as const;

function installedVersion(name: string): string {
  // Read from node_modules: some packages do not export their package.json.
  return (JSON.parse(readFileSync(path.join(root, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
}

describe("packages whose internals we use", () => {
  it.each(Object.entries(PINNED))("%s is pinned to exactly %s in package.json, and that version is installed", (name, version) => {
    expect(manifest.dependencies[name]).toBe(version);
    expect(installedVersion(name)).toBe(version);
  });

});

describe("the pipelined tenant unit's internals (src/tenancy/pipelined-unit.ts)", () => {
  // pg asks for pg-protocol with a ^ range; the adapter's batches are its
  // messages, so the version installed is pinned too.
  it.each([["knex", "3.3.0"], ["pg", "8.23.1"], ["pg-protocol", "1.16.1"]])("%s is pinned to exactly %s in package.json, and that version is installed", (name, version) => {
    expect(manifest.dependencies[name]).toBe(version);
    expect(installedVersion(name)).toBe(version);
  });

  it("Knex's client runs queries through acquireConnection, _query and releaseConnection, reached through context", async () => {
    const knex = knexFactory({ client: "pg", connection: {} });
    try {
      const client = knex.client as unknown as Record<string, unknown>;
      for (const name of ["acquireConnection", "releaseConnection", "_query", "_stream", "transaction", "destroy"]) {
        expect(typeof client[name], name).toBe("function");
      }
      expect((knex as unknown as { context: { client: unknown } }).context.client).toBe(knex.client);
      expect(typeof (knex as unknown as { context: { queryBuilder: unknown } }).context.queryBuilder).toBe("function");
    } finally {
      await knex.destroy();
    }
  });

  it("pg's Query has the hooks the unit overrides, and its Connection sends parse, bind and execute", () => {
    const proto = (pg as unknown as { Query: { prototype: Record<string, unknown> } }).Query.prototype;
    for (const name of ["prepare", "requiresPreparation", "handleRowDescription", "handleDataRow", "handleCommandComplete", "handleError", "handleReadyForQuery", "submit"]) {
      expect(typeof proto[name], name).toBe("function");
    }
    const connection = new pg.Client().connection as unknown as Record<string, unknown>;
    for (const name of ["parse", "bind", "execute", "describe", "sync"]) {
      expect(typeof connection[name], name).toBe("function");
    }
  });
});

describe("knex-pglite's answers that src/db/database.ts corrects (public APIs, pinned behaviour)", () => {
  // The answers themselves: knex-pglite.pglite.test.ts, on PGlite runs only
  // (a PostgreSQL run has no PGlite template, and a PGlite of its own would run initdb).
  it("knex-pglite is pinned to exactly 0.14.0, and that version is installed", () => {
    expect(manifest.dependencies["knex-pglite"]).toBe("0.14.0");
    expect(installedVersion("knex-pglite")).toBe("0.14.0");
  });
});

describe("what the gRPC fast path relies on (src/server/grpc-fast-path/)", () => {
  const {
    codeToHttpStatus,
    compressionNegotiate,
    createMethodSerializationLookup,
    envelopeCompress,
    errorFromJsonBytes,
    errorToJsonBytes,
    findTrailerError,
    parseTimeout,
    setTrailerStatus,
    trailerParse,
    trailerSerialize,
    validateUniversalHandlerOptions,
  } = connectInternals;
  const opt = validateUniversalHandlerOptions({ acceptCompression: [compressionGzip, compressionBrotli] });

  // Each @private helper connect-internals.ts exports, with what the fast path
  // and the decode-error rewrite need of it. Answers compared byte for byte
  // in test/server/grpc-fast-path.test.ts depend on every line.
  const checks: Record<keyof typeof connectInternals, () => void> = {
    validateUniversalHandlerOptions() {
      // Connect's defaults for what the fast path leaves unset.
      expect(opt).toMatchObject({ compressMinBytes: 1024, writeMaxBytes: 0xffffffff, maxTimeoutMs: Number.MAX_SAFE_INTEGER });
      expect(opt.acceptCompression.map((c) => c.name)).toEqual(["gzip", "br"]);
    },
    createMethodSerializationLookup() {
      const lookup = createMethodSerializationLookup(Health.method.check, undefined, undefined, { ...opt, readMaxBytes: 64 });
      const request = create(HealthCheckRequestSchema, { service: "s" });
      expect(lookup.getI(true).parse(toBinary(HealthCheckRequestSchema, request))).toEqual(request);
      expect(lookup.getO(true).serialize(create(HealthCheckResponseSchema, { status: 1 }))).toEqual(Uint8Array.of(0x08, 0x01));
      // The decode-error rewrite recognises this message (src/errors/request-decoding.ts).
      expect(() => lookup.getI(true).parse(Uint8Array.of(0xff, 0xff))).toThrow(/^\[internal\] parse binary: /);
    },
    compressionNegotiate() {
      expect(compressionNegotiate(opt.acceptCompression, null, "identity,deflate,gzip", "Grpc-Accept-Encoding").response?.name).toBe("gzip");
      expect(compressionNegotiate(opt.acceptCompression, null, null, "Grpc-Accept-Encoding")).toEqual({ request: null, response: null });
    },
    async envelopeCompress() {
      const data = new Uint8Array(2048).fill(7);
      const compressed = await envelopeCompress({ flags: 0, data }, compressionGzip, 1024);
      expect(compressed.flags).toBe(1);
      expect(new Uint8Array(gunzipSync(compressed.data))).toEqual(data);
    },
    contentTypeProto: () => expect(connectInternals.contentTypeProto).toBe("application/grpc+proto"),
    grpcStatusOk: () => expect(connectInternals.grpcStatusOk).toBe("0"),
    headerAcceptEncoding: () => expect(connectInternals.headerAcceptEncoding).toBe("Grpc-Accept-Encoding"),
    headerGrpcMessage: () => expect(connectInternals.headerGrpcMessage).toBe("Grpc-Message"),
    headerGrpcStatus: () => expect(connectInternals.headerGrpcStatus).toBe("Grpc-Status"),
    headerStatusDetailsBin: () => expect(connectInternals.headerStatusDetailsBin).toBe("Grpc-Status-Details-Bin"),
    parseTimeout() {
      expect(parseTimeout("10S", Number.MAX_SAFE_INTEGER)).toEqual({ timeoutMs: 10_000 });
      expect(parseTimeout(null, Number.MAX_SAFE_INTEGER)).toEqual({ timeoutMs: undefined });
      // An invalid value: the fast path leaves the call to Connect.
      expect(parseTimeout("soon", Number.MAX_SAFE_INTEGER).error).toBeInstanceOf(ConnectError);
    },
    setTrailerStatus() {
      const trailer = setTrailerStatus(new Headers(), new ConnectError("a b/c", Code.FailedPrecondition, undefined, [
        { desc: HealthCheckRequestSchema, value: create(HealthCheckRequestSchema, { service: "d" }) },
      ]));
      expect(trailer.get("grpc-status")).toBe("9");
      expect(trailer.get("grpc-message")).toBe("a%20b%2Fc");
      expect(trailer.get("grpc-status-details-bin")).toMatch(/^[A-Za-z0-9+/]+=*$/);
    },
    findTrailerError() {
      const found = findTrailerError(new Headers({ "grpc-status": "13", "grpc-message": "parse%20binary%3A%20x" }));
      expect([found?.code, found?.rawMessage]).toEqual([Code.Internal, "parse binary: x"]);
      expect(findTrailerError(new Headers({ "grpc-status": "0" }))).toBeUndefined();
    },
    trailerFlag: () => expect(connectInternals.trailerFlag).toBe(0x80),
    trailerParse: () => expect(trailerParse(new TextEncoder().encode("grpc-status: 3\r\ngrpc-message: m\r\n")).get("grpc-status")).toBe("3"),
    trailerSerialize: () => expect(new TextDecoder().decode(trailerSerialize(new Headers({ "grpc-status": "3" })))).toBe("grpc-status: 3\r\n"),
    codeToHttpStatus() {
      expect(codeToHttpStatus(Code.InvalidArgument)).toBe(400);
      expect(codeToHttpStatus(Code.Internal)).toBe(500);
    },
    errorToJsonBytes() {
      const json = JSON.parse(new TextDecoder().decode(errorToJsonBytes(new ConnectError("m", Code.InvalidArgument), undefined))) as unknown;
      expect(json).toEqual({ code: "invalid_argument", message: "m" });
    },
    errorFromJsonBytes() {
      const found = errorFromJsonBytes(new TextEncoder().encode('{"code":"internal","message":"parse binary: x"}'), undefined, new ConnectError("fallback"));
      expect([found.code, found.rawMessage]).toEqual([Code.Internal, "parse binary: x"]);
    },
  };

  it("connect-internals.ts exports only helpers checked here", () => {
    expect(Object.keys(connectInternals).sort()).toEqual(Object.keys(checks).sort());
  });

  it.each(Object.keys(checks))("Connect's %s still does what the fast path relies on", async (name) => {
    await checks[name as keyof typeof checks]();
  });

  it("@bufbuild/protobuf is pinned to exactly 2.17.0, and its decode errors read as the decode-error rewrite expects", () => {
    // The rewrite (src/errors/request-decoding.ts, used by grpc-fast-path/decode-errors.ts)
    // recognises protobuf's own error texts, which no version promises.
    expect(manifest.dependencies["@bufbuild/protobuf"]).toBe("2.17.0");
    expect(installedVersion("@bufbuild/protobuf")).toBe("2.17.0");
    const input = createMethodSerializationLookup(Health.method.check, undefined, undefined, opt).getI(true);
    const answer = (bytes: Uint8Array) => {
      try {
        input.parse(bytes);
        return "decoded";
      } catch (err) {
        return requestDecodeError(err as ConnectError)?.rawMessage;
      }
    };
    expect(answer(Uint8Array.of(0x0a, 0x02, 0xff, 0xfe))).toBe("the request is not a valid protobuf message: a string field is not valid UTF-8");
    expect(answer(Uint8Array.of(0xff, 0xff))).toMatch(/^the request is not a valid protobuf message: ./);
  });

  it("connect-node 2.1.2 maps HTTP/2 reset codes to the errors reset-codes.ts mirrors", async () => {
    // Not exported by connect-node: loaded from its file, which an upgrade may move (then this fails too).
    const nodeError = (await import(path.join(root, "node_modules/@connectrpc/connect-node/dist/esm/node-error.js"))) as {
      connectErrorFromH2ResetCode(code: number): ConnectError | undefined;
    };
    for (let code = 0; code <= 14; code++) {
      const theirs = nodeError.connectErrorFromH2ResetCode(code);
      const ours = errorFromResetCode(code);
      expect([ours?.code, ours?.rawMessage], `reset code ${code}`).toEqual([theirs?.code, theirs?.rawMessage]);
    }
  });

  it("node:http2 serves a request listener through its compatibility layer, the server's one \"stream\" listener", () => {
    const server = http2.createServer(() => {});
    expect(server.listeners("stream")).toHaveLength(1);
  });
});
