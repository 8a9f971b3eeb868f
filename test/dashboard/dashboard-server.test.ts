// The dashboard port: HTTP/1.1 for browsers, serving the bundle and the same
// RPCs, authentication, tenancy and logging as the main port. What the page
// does in a browser is tested in test/browser/ (npm run test:browser).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { defaultConfig, loadConfig } from "../../src/config.js";
import { AUTH_MODE_PLACEHOLDER, loadStaticAssets } from "../../src/dashboard/static-assets.js";
import { silentLogger } from "../../src/logging/logger.js";
import { createServer } from "../../src/server/server.js";
import { callerHeaders, type Caller, keyFixture } from "../auth/support.js";
import { createTestDatabase } from "../support/backend.js";
import { codeOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import type { Knex } from "knex";

const k = keyFixture();
let assetsDir: string;
let knex: Knex;
let keyed: TestServer;
let dev: TestServer;

const INDEX = `<!doctype html><meta name="orchestrator-auth" content="${AUTH_MODE_PLACEHOLDER}"><script type="module" src="/app.js"></script>`;

beforeAll(async () => {
  assetsDir = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-dashboard-"));
  fs.writeFileSync(path.join(assetsDir, "index.html"), INDEX);
  fs.writeFileSync(path.join(assetsDir, "app.js"), "console.log('dashboard');\n");
  fs.writeFileSync(path.join(assetsDir, "styles.css"), "body { margin: 0 }\n");
  fs.writeFileSync(path.join(assetsDir, "notes.txt"), "not a served type\n");
  knex = await createTestDatabase();
  keyed = await startTestServer({ authKeys: k.authKeys }, knex, assetsDir);
  dev = await startTestServer({}, knex, assetsDir);
});
afterAll(async () => {
  await Promise.all([keyed?.close(), dev?.close()]);
  await knex?.destroy();
  fs.rmSync(assetsDir, { recursive: true, force: true });
});

/** A Connect client over HTTP/1.1, as a browser's fetch would call (connect-web speaks the same protocol). */
function http1<S extends Parameters<typeof createClient>[0]>(service: S, baseUrl: string, caller: Caller, protocol: "connect" | "grpc-web" = "connect") {
  const options = { baseUrl, httpVersion: "1.1" as const, interceptors: [callerHeaders(caller)] };
  return createClient(service, protocol === "connect" ? createConnectTransport(options) : createGrpcWebTransport(options));
}

describe("the dashboard's static files", () => {
  it("/ is index.html, telling the page whether keys are configured, with a strict Content-Security-Policy", async () => {
    for (const [t, mode] of [[keyed, "api-keys"], [dev, "development"]] as const) {
      const res = await fetch(`${t.dashboardUrl}/`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(await res.text()).toBe(INDEX.replace(AUTH_MODE_PLACEHOLDER, mode));
      const csp = res.headers.get("content-security-policy")!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("connect-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain("unsafe");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    }
  });

  it("serves the bundle's files with their types, answers 304 to a matching etag, and HEAD without a body", async () => {
    const js = await fetch(`${dev.dashboardUrl}/app.js?v=1`);
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(await js.text()).toBe("console.log('dashboard');\n");
    const css = await fetch(`${dev.dashboardUrl}/styles.css`);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    const again = await fetch(`${dev.dashboardUrl}/styles.css`, { headers: { "if-none-match": css.headers.get("etag")! } });
    expect(again.status).toBe(304);
    const head = await fetch(`${dev.dashboardUrl}/app.js`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String("console.log('dashboard');\n".length));
    expect(await head.text()).toBe("");
  });

  it("serves nothing else: other files, other paths and path tricks answer 404", async () => {
    for (const p of ["/notes.txt", "/../package.json", "/%2e%2e/package.json", "/dist/dashboard/app.js", "/index.htm", "/app.js/"]) {
      const res = await fetch(`${dev.dashboardUrl}${p}`);
      expect(res.status, p).toBe(404);
      await res.arrayBuffer();
    }
  });

  it("allows no other origin: a CORS preflight gets no Access-Control-Allow-Origin", async () => {
    const res = await fetch(`${dev.dashboardUrl}/orchestration.state.v1.StatisticsService/ListAgentStatistics`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
    });
    await res.arrayBuffer();
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("a dashboard that is not built stops the server with a message saying how to build it", () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-empty-"));
    onTestFinished(() => fs.rmSync(empty, { recursive: true, force: true }));
    expect(() => loadStaticAssets(empty, "development")).toThrow(/DASHBOARD_PORT is set but the dashboard is not built .*run npm run build/);
    const server = createServer({ knex, logger: silentLogger, config: defaultConfig, dashboardAssetsDir: empty });
    return expect(server.listenDashboard(0, "127.0.0.1")).rejects.toThrow(/npm run build/);
  });
});

describe("the RPCs on the dashboard port", () => {
  it("answer the Connect protocol over HTTP/1.1 with the main port's authentication: no key, UNAUTHENTICATED", async () => {
    expect(await codeOf(http1(StatisticsService, keyed.dashboardUrl!, {}).listAgentStatistics({}))).toBe(Code.Unauthenticated);
    expect(await codeOf(http1(StatisticsService, keyed.dashboardUrl!, { key: "x".repeat(40) }).listAgentStatistics({}))).toBe(Code.Unauthenticated);
  });

  it("a read-only key reads its own tenant's rows, and is refused writes", async () => {
    const writer = http1(StatisticsService, keyed.dashboardUrl!, { key: k.writerA });
    await writer.recordTaskOutcome({ agentKey: "dashboard-agent", success: true });
    const reader = http1(StatisticsService, keyed.dashboardUrl!, { key: k.readerA });
    expect((await reader.listAgentStatistics({})).statistics.map((s) => s.agentKey)).toContain("dashboard-agent");
    expect(await codeOf(reader.recordTaskOutcome({ agentKey: "dashboard-agent", success: true }))).toBe(Code.PermissionDenied);
    // Tenant B's key sees none of A's rows, and cannot name A's tenant.
    expect((await http1(StatisticsService, keyed.dashboardUrl!, { key: k.writerB }).listAgentStatistics({})).statistics).toEqual([]);
    expect(await codeOf(http1(StatisticsService, keyed.dashboardUrl!, { key: k.writerB, tenant: k.tenantA }).listAgentStatistics({}))).toBe(Code.PermissionDenied);
  });

  it("are logged like any call, naming the key", async () => {
    await http1(StatisticsService, keyed.dashboardUrl!, { key: k.readerA }).listTopPerformingAgents({});
    expect(keyed.logs).toContainEqual(expect.objectContaining({ msg: "rpc", procedure: "orchestration.state.v1.StatisticsService/ListTopPerformingAgents", key: "reader-a", code: "OK" }));
  });

  it("stream over HTTP/1.1: WatchCircuitBreakers sends a transition committed through the main port", async () => {
    const tenant = newTenant();
    const controller = new AbortController();
    const stream = http1(CircuitBreakerService, dev.dashboardUrl!, { tenant }).watchCircuitBreakers({}, { signal: controller.signal })[Symbol.asyncIterator]();
    expect((await stream.next()).value?.event.case).toBe("caughtUp");
    const main = createClient(CircuitBreakerService, createConnectTransport({ baseUrl: dev.baseUrl, httpVersion: "2", interceptors: [callerHeaders({ tenant })] }));
    await main.saveCircuitBreakerState({ circuitBreaker: { agentKey: "watched", state: 4 } });
    const next = await stream.next();
    expect(next.value?.event.case).toBe("transition");
    expect(next.value?.event.value).toMatchObject({ agentKey: "watched", toState: 4 });
    controller.abort();
  });

  it("gRPC-Web works there too (the same handler)", async () => {
    expect((await http1(StatisticsService, dev.dashboardUrl!, { tenant: newTenant() }, "grpc-web").listAgentStatistics({})).statistics).toEqual([]);
  });
});

describe("configuration", () => {
  it("DASHBOARD_PORT is unset (no dashboard) by default, read as a port, and must differ from PORT", () => {
    expect(defaultConfig.dashboardPort).toBeUndefined();
    expect(loadConfig({}).dashboardPort).toBeUndefined();
    expect(loadConfig({ DASHBOARD_PORT: "8080" }).dashboardPort).toBe(8080);
    expect(() => loadConfig({ DASHBOARD_PORT: "http" })).toThrow(/^DASHBOARD_PORT must be an integer/);
    expect(() => loadConfig({ DASHBOARD_PORT: "70000" })).toThrow(/^DASHBOARD_PORT must be an integer/);
    expect(() => loadConfig({ DASHBOARD_PORT: "50051" })).toThrow(/^DASHBOARD_PORT must differ from PORT/);
    expect(loadConfig({ PORT: "0", DASHBOARD_PORT: "0" }).dashboardPort).toBe(0);
  });
});

describe("shutdown", () => {
  it("ends a watch on the dashboard port with UNAVAILABLE and closes the port", async () => {
    const t = await startTestServer({}, knex, assetsDir);
    const stream = http1(CircuitBreakerService, t.dashboardUrl!, { tenant: newTenant() }).watchCircuitBreakers({})[Symbol.asyncIterator]();
    expect((await stream.next()).value?.event.case).toBe("caughtUp");
    const ended = codeOf(stream.next());
    await t.server.shutdown();
    expect(await ended).toBe(Code.Unavailable);
    await expect(fetch(`${t.dashboardUrl}/`)).rejects.toThrow();
  });
});

describe("TLS", () => {
  it("with a certificate the dashboard port serves HTTPS only", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "orchestrator-state-dashboard-tls-"));
    const certFile = path.join(dir, "cert.pem");
    const keyFile = path.join(dir, "key.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ], { stdio: "ignore" });
    const t = await startTestServer({ tlsCertFile: certFile, tlsKeyFile: keyFile }, knex, assetsDir);
    try {
      expect(t.dashboardUrl).toMatch(/^https:/);
      const ca = fs.readFileSync(certFile);
      const client = createClient(StatisticsService, createConnectTransport({
        baseUrl: t.dashboardUrl!, httpVersion: "1.1", nodeOptions: { ca }, interceptors: [callerHeaders({ tenant: newTenant() })],
      }));
      expect((await client.listAgentStatistics({})).statistics).toEqual([]);
      await expect(fetch(t.dashboardUrl!.replace("https:", "http:"))).rejects.toThrow();
    } finally {
      await t.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
