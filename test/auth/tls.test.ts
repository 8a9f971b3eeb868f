// With TLS_CERT_FILE and TLS_KEY_FILE the server speaks TLS only: h2 for
// gRPC (Connect and grpc-js clients), and HTTP/1.1 as well for the Connect and
// gRPC-Web protocols; the certificate is a self-signed one made here.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { createServer } from "../../src/server/server.js";
import { defaultConfig } from "../../src/config.js";
import { silentLogger } from "../../src/logging/logger.js";
import { grpcJsPackage } from "../support/clients.js";
import { codeOf, errorOf } from "../support/errors.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { callerHeaders, keyFixture } from "./support.js";

const k = keyFixture();
let dir: string;
let certFile: string;
let keyFile: string;
let ca: Buffer;
let t: TestServer;
let httpsUrl: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-tls-"));
  certFile = path.join(dir, "cert.pem");
  keyFile = path.join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "ignore" });
  ca = fs.readFileSync(certFile);
  t = await startTestServer({ authKeys: k.authKeys, tlsCertFile: certFile, tlsKeyFile: keyFile });
  httpsUrl = `https://127.0.0.1:${t.port}`;
});
afterAll(async () => {
  await t?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function statistics(protocol: "grpc" | "grpc-web" | "connect", httpVersion: "2" | "1.1", key?: string) {
  const options = { baseUrl: httpsUrl, interceptors: [callerHeaders({ key })] };
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ ...options, nodeOptions: { ca } })
      : httpVersion === "2"
        ? (protocol === "connect" ? createConnectTransport : createGrpcWebTransport)({ ...options, httpVersion: "2", nodeOptions: { ca } })
        : (protocol === "connect" ? createConnectTransport : createGrpcWebTransport)({ ...options, httpVersion: "1.1", nodeOptions: { ca } });
  return createClient(StatisticsService, transport);
}

describe("TLS", () => {
  it.each([
    ["gRPC over h2", "grpc", "2"],
    ["Connect over h2", "connect", "2"],
    ["gRPC-Web over h2", "grpc-web", "2"],
    ["Connect over HTTP/1.1", "connect", "1.1"],
    ["gRPC-Web over HTTP/1.1", "grpc-web", "1.1"],
  ] as const)("%s works with a key, and answers UNAUTHENTICATED without", async (_name, protocol, version) => {
    const agent = `agent-${protocol}-${version}`;
    const res = await statistics(protocol, version, k.writerA).recordTaskOutcome({ agentKey: agent, success: true });
    expect(res.statistics?.totalTasks).toBe(1n);
    expect(await codeOf(statistics(protocol, version).getAgentStatistics({ agentKey: agent }))).toBe(Code.Unauthenticated);
  });

  it("health answers over TLS without a key", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: httpsUrl, nodeOptions: { ca } }));
    expect((await health.check({})).status).toBe(ServingStatus.SERVING);
  });

  it("grpc-js with TLS credentials trusting the certificate", async () => {
    const pkg = grpcJsPackage(["orchestration/state/v1/statistics_service.proto"]);
    const v1 = ((pkg.orchestration as grpc.GrpcObject).state as grpc.GrpcObject).v1 as grpc.GrpcObject;
    const Ctor = v1.StatisticsService as grpc.ServiceClientConstructor;
    const client = new Ctor(`localhost:${t.port}`, grpc.credentials.createSsl(ca));
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${k.writerA}`);
    try {
      const res = await new Promise<{ statistics: { total_tasks: string } }>((resolve, reject) =>
        (client.RecordTaskOutcome as (r: object, m: grpc.Metadata, cb: (e: Error | null, r: { statistics: { total_tasks: string } }) => void) => void)
          .call(client, { agent_key: "agent-grpc-js", success: true }, md, (err, r) => (err ? reject(err) : resolve(r))),
      );
      expect(res.statistics.total_tasks).toBe("1");
    } finally {
      client.close();
    }
  });

  it("refuses a client that does not trust the certificate", async () => {
    const untrusting = createClient(StatisticsService, createGrpcTransport({ baseUrl: httpsUrl, interceptors: [callerHeaders({ key: k.writerA })] }));
    const err = await errorOf(untrusting.getAgentStatistics({ agentKey: "agent-grpc-2" }));
    expect(err.message).toMatch(/self[- ]signed certificate/i);
  });

  it("does not serve cleartext h2c", async () => {
    const cleartext = createClient(
      StatisticsService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${t.port}`, interceptors: [callerHeaders({ key: k.writerA })] }),
    );
    expect(await codeOf(cleartext.getAgentStatistics({ agentKey: "agent-grpc-2" }))).not.toBe("ok");
  });

  it("logs that it serves TLS", () => {
    expect(t.logs.find((l) => l.msg === "health is SERVING")).toMatchObject({ tls: true, auth: "api-keys" });
  });

  it("shuts down promptly with an idle HTTP/1.1 keep-alive connection open", async () => {
    const other = await startTestServer({ tlsCertFile: certFile, tlsKeyFile: keyFile, shutdownGraceMs: 30_000 }, t.knex);
    const client = createClient(
      Health,
      createConnectTransport({ baseUrl: `https://127.0.0.1:${other.port}`, httpVersion: "1.1", nodeOptions: { ca } }),
    );
    expect((await client.check({})).status).toBe(ServingStatus.SERVING);
    const start = Date.now();
    await other.server.shutdown();
    expect(Date.now() - start).toBeLessThan(5_000);
  });
});

describe("TLS configuration", () => {
  const build = (tls: { tlsCertFile?: string; tlsKeyFile?: string }) => () =>
    createServer({ knex: t.knex, logger: silentLogger, config: { ...defaultConfig, ...tls } });
  it("a certificate without a key stops the server, naming TLS_KEY_FILE", () => {
    expect(build({ tlsCertFile: certFile })).toThrow(/TLS_KEY_FILE/);
  });
  it("a key without a certificate stops the server, naming TLS_CERT_FILE", () => {
    expect(build({ tlsKeyFile: keyFile })).toThrow(/TLS_CERT_FILE/);
  });
  it("an unreadable file stops the server, naming the setting", () => {
    expect(build({ tlsCertFile: path.join(dir, "missing.pem"), tlsKeyFile: keyFile })).toThrow(/TLS_CERT_FILE: cannot read/);
  });
});
