import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as connectProtocol from "@connectrpc/connect/protocol";
import * as connectProtocolConnect from "@connectrpc/connect/protocol-connect";
import * as connectProtocolGrpc from "@connectrpc/connect/protocol-grpc";
import * as connectProtocolGrpcWeb from "@connectrpc/connect/protocol-grpc-web";
import knexFactory from "knex";
import ClientPgLite from "knex-pglite";
import pg from "pg";
import { describe, expect, it } from "vitest";

// Some of our code leans on what a package does not promise: the gRPC unary
// fast path (src/server/grpc-unary-fast-path.ts) on Connect's protocol
// helpers, the tenant unit (src/tenancy/tenant-unit.ts) on Knex's client and
// pg's Query hooks, src/db/database.ts on knex-pglite's processResponse. Those
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

  it("Connect's protocol helpers the fast path and the decode-error rewrite call are there", () => {
    const functions = {
      protocol: [connectProtocol, ["compressionNegotiate", "createMethodSerializationLookup", "envelopeCompress", "validateUniversalHandlerOptions"]],
      "protocol-grpc": [connectProtocolGrpc, ["parseTimeout", "setTrailerStatus", "findTrailerError"]],
      "protocol-grpc-web": [connectProtocolGrpcWeb, ["trailerParse", "trailerSerialize"]],
      "protocol-connect": [connectProtocolConnect, ["codeToHttpStatus", "errorFromJsonBytes", "errorToJsonBytes"]],
    } as const;
    for (const [entry, [module, names]] of Object.entries(functions)) {
      for (const name of names) expect(typeof (module as Record<string, unknown>)[name], `${entry}.${name}`).toBe("function");
    }
    expect(connectProtocolGrpc.headerGrpcStatus).toBe("Grpc-Status");
    expect(connectProtocolGrpc.contentTypeProto).toBe("application/grpc+proto");
  });

  it("Knex's client runs queries through acquireConnection, _query and releaseConnection, reached through context", async () => {
    const knex = knexFactory({ client: "pg", connection: {} });
    try {
      const client = knex.client as unknown as Record<string, unknown>;
      for (const name of ["acquireConnection", "releaseConnection", "_query", "_stream", "transaction"]) {
        expect(typeof client[name], name).toBe("function");
      }
      expect((knex as unknown as { context: { client: unknown } }).context.client).toBe(knex.client);
    } finally {
      await knex.destroy();
    }
  });

  it("pg's Query has the hooks the tenant unit overrides", () => {
    const proto = (pg as unknown as { Query: { prototype: Record<string, unknown> } }).Query.prototype;
    for (const name of ["prepare", "handleRowDescription", "handleDataRow", "handleCommandComplete", "handleError", "handleReadyForQuery", "submit"]) {
      expect(typeof proto[name], name).toBe("function");
    }
  });

  it("knex-pglite's client has the processResponse database.ts overrides", () => {
    expect(typeof (ClientPgLite as unknown as { prototype: Record<string, unknown> }).prototype.processResponse).toBe("function");
  });
});
