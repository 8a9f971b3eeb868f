import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { silentLogger } from "../../src/logging/logger.js";
import { createMetrics } from "../../src/metrics/metrics.js";
import { startOperationsServer, type OperationsServer } from "../../src/operations/operations-server.js";
import { startTestServer, type TestServer } from "../support/server.js";

// /livez and /readyz on the operations port answer from the same health
// service as grpc.health.v1.Health/Check: for every state the server goes
// through, both say the same.

let t: TestServer;
let operations: OperationsServer;
let health: ReturnType<typeof createClient<typeof Health>>;

beforeAll(async () => {
  t = await startTestServer({ shutdownDrainDelayMs: 1_000 });
  operations = await startOperationsServer({
    port: 0,
    host: "127.0.0.1",
    registry: createMetrics({ maxAgentSeries: 0 }).registry,
    health: t.server.health,
    logger: silentLogger,
  });
  health = createClient(Health, createGrpcTransport({ baseUrl: t.baseUrl }));
});
afterAll(async () => {
  await operations?.close();
  await t?.close().catch(() => {});
});

async function http(path: string, method = "GET"): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${operations.port}${path}`, { method });
  return { status: res.status, body: await res.text() };
}

/** What Check answers for `service`: the status name, or the error code's name. */
async function check(service: string): Promise<string> {
  return health.check({ service }).then(
    (res) => ServingStatus[res.status],
    (err: unknown) => Code[ConnectError.from(err).code],
  );
}

/** /readyz and Check agree: 200 with SERVING, 503 with any other status, 404 with NOT_FOUND. */
async function expectAgreement(service: string, want: string): Promise<void> {
  const grpcAnswer = await check(service);
  const res = await http(service === "" ? "/readyz" : `/readyz?service=${encodeURIComponent(service)}`);
  expect(grpcAnswer).toBe(want);
  if (want === "NotFound") {
    expect(res.status).toBe(404);
  } else {
    expect(res.status).toBe(want === "SERVING" ? 200 : 503);
    expect(res.body.trim()).toBe(want);
  }
}

const WORKFLOW = "orchestration.state.v1.WorkflowStateService";

describe("HTTP health on the operations port", () => {
  it("/readyz says SERVING, as Check does, for the server and each service; 404 where Check says NOT_FOUND", async () => {
    await expectAgreement("", "SERVING");
    await expectAgreement(WORKFLOW, "SERVING");
    await expectAgreement("orchestration.state.v1.RetentionService", "SERVING");
    await expectAgreement("no.such.Service", "NotFound");
    expect((await http("/livez")).status).toBe(200);
    expect((await http("/readyz", "HEAD")).status).toBe(200);
    expect((await http("/nowhere")).status).toBe(404);
    expect((await http("/readyz", "POST")).status).toBe(405);
  });

  it("while the database is unreachable, /readyz answers 503 NOT_SERVING as Check does, and /livez stays 200", async () => {
    t.server.health.setDependency("database", false);
    try {
      await expectAgreement("", "NOT_SERVING");
      await expectAgreement(WORKFLOW, "NOT_SERVING");
      expect((await http("/livez")).status).toBe(200);
    } finally {
      t.server.health.setDependency("database", true);
    }
    await expectAgreement("", "SERVING");
  });

  it("once shutdown starts, /readyz answers 503 NOT_SERVING during the drain, as Check does, and /livez stays 200", async () => {
    const stopping = t.server.shutdown();
    // The drain delay (1 s) keeps the gRPC port answering with NOT_SERVING.
    await expectAgreement("", "NOT_SERVING");
    expect((await http("/livez")).status).toBe(200);
    await stopping;
  });
});
