import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { defaultConfig, loadConfig } from "../../src/config.js";
import { backendName } from "../support/backend.js";
import { workflowClient, type Protocol } from "../support/clients.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A save whose encoded message is a little more than `bytes` long (one long string in the context). */
const saveOf = (executionId: string, bytes: number) => ({
  execution: { executionId, workflowName: "w", status: WorkflowStatus.RUNNING, context: { blob: "x".repeat(bytes) } },
});

async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("MAX_REQUEST_BYTES", () => {
  it("defaults to 4 MiB, is read from the environment, and a malformed value names the variable", () => {
    expect(defaultConfig.maxRequestBytes).toBe(4 * MiB);
    expect(loadConfig({}).maxRequestBytes).toBe(4 * MiB);
    expect(loadConfig({ MAX_REQUEST_BYTES: "65536" }).maxRequestBytes).toBe(65_536);
    expect(() => loadConfig({ MAX_REQUEST_BYTES: "4MiB" })).toThrow(/MAX_REQUEST_BYTES/);
    expect(() => loadConfig({ MAX_REQUEST_BYTES: "0" })).toThrow(/MAX_REQUEST_BYTES/);
  });
});

describe(`request size limit on ${backendName}`, () => {
  let byDefault: TestServer;
  let small: TestServer;
  beforeAll(async () => {
    byDefault = await startTestServer();
    small = await startTestServer({ maxRequestBytes: 64 * KiB }, byDefault.knex);
  });
  afterAll(async () => {
    await small.close();
    await byDefault.close();
  });

  it.each<Protocol>(["grpc", "connect", "grpc-web"])(
    "over %s, a request above the default 4 MiB answers RESOURCE_EXHAUSTED and stores nothing; one below is served",
    async (protocol) => {
      const client = workflowClient(byDefault.baseUrl, newTenant(), protocol);
      expect(await codeOf(client.saveWorkflowExecution(saveOf("big", 4 * MiB + KiB)))).toBe(Code.ResourceExhausted);
      expect(await codeOf(client.getWorkflowExecution({ executionId: "big" }))).toBe(Code.NotFound);
      expect(await codeOf(client.saveWorkflowExecution(saveOf("fits", 3 * MiB)))).toBe("ok");
    },
  );

  it.each<Protocol>(["grpc", "connect"])("over %s, the configured limit applies: 100 KiB answers RESOURCE_EXHAUSTED at 64 KiB", async (protocol) => {
    const tenant = newTenant();
    const client = workflowClient(small.baseUrl, tenant, protocol);
    expect(await codeOf(client.saveWorkflowExecution(saveOf("e", 100 * KiB)))).toBe(Code.ResourceExhausted);
    expect(await codeOf(client.saveWorkflowExecution(saveOf("e", 32 * KiB)))).toBe("ok");
    // The same 100 KiB request is served where the limit is the default.
    expect(await codeOf(workflowClient(byDefault.baseUrl, tenant, protocol).saveWorkflowExecution(saveOf("e", 100 * KiB)))).toBe("ok");
  });
});
