// Health and reflection answer without a key by default, also when keys are
// configured (AUTH_PUBLIC_HEALTH, AUTH_PUBLIC_REFLECTION); turned off, they
// need a valid key of any tenant, read-only or not. Without keys the server
// says loudly that it runs in development mode.
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection, ServerReflectionRequestSchema } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { WorkflowStateService } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { createTestDatabase } from "../support/backend.js";
import { codeOf } from "../support/errors.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";
import { authClient, type Caller, keyFixture } from "./support.js";
import type { Knex } from "knex";

const k = keyFixture();
let knex: Knex;
let open: TestServer; // keys, public health and reflection (the defaults)
let closed: TestServer; // keys, AUTH_PUBLIC_HEALTH=false, AUTH_PUBLIC_REFLECTION=false
let dev: TestServer; // no keys
beforeAll(async () => {
  knex = await createTestDatabase();
  open = await startTestServer({ authKeys: k.authKeys }, knex);
  closed = await startTestServer({ authKeys: k.authKeys, authPublicHealth: false, authPublicReflection: false }, knex);
  dev = await startTestServer({}, knex);
});
afterAll(async () => {
  await Promise.all([open.close(), closed.close(), dev.close()]);
  await knex.destroy();
});

async function healthCode(t: TestServer, caller: Caller): Promise<Code | "ok"> {
  return codeOf(
    authClient(Health, t.baseUrl, caller)
      .check({ service: "" })
      .then((r) => expect(r.status).toBe(ServingStatus.SERVING)),
  );
}

async function reflectionCode(t: TestServer, caller: Caller): Promise<Code | "ok"> {
  async function* requests() {
    yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
  }
  return codeOf(
    (async () => {
      for await (const res of authClient(ServerReflection, t.baseUrl, caller).serverReflectionInfo(requests())) {
        expect(res.messageResponse.case).toBe("listServicesResponse");
      }
    })(),
  );
}

describe("with keys and the defaults", () => {
  it("health answers without a key", async () => {
    expect(await healthCode(open, {})).toBe("ok");
  });
  it("reflection answers without a key", async () => {
    expect(await reflectionCode(open, {})).toBe("ok");
  });
  it("the four services still need one", async () => {
    expect(await codeOf(authClient(WorkflowStateService, open.baseUrl, { tenant: k.tenantA }).getWorkflowExecution({ executionId: "x" }))).toBe(
      Code.Unauthenticated,
    );
  });
  it("say at startup that keys are in force, with no development-mode warning", () => {
    expect(open.logs.find((l) => l.msg === "health is SERVING")).toMatchObject({ level: "info", auth: "api-keys", keys: 3, tls: false });
    expect(open.logs.filter((l) => l.level === "warn")).toEqual([]);
  });
});

describe("with AUTH_PUBLIC_HEALTH=false and AUTH_PUBLIC_REFLECTION=false", () => {
  it("health answers UNAUTHENTICATED without a key or with an unknown one", async () => {
    expect(await healthCode(closed, {})).toBe(Code.Unauthenticated);
    expect(await healthCode(closed, { key: "x".repeat(32) })).toBe(Code.Unauthenticated);
  });
  it("health answers any valid key, read-only included", async () => {
    expect(await healthCode(closed, { key: k.readerA })).toBe("ok");
    expect(await healthCode(closed, { key: k.writerB })).toBe("ok");
  });
  it("reflection answers UNAUTHENTICATED without a key and answers a valid one", async () => {
    expect(await reflectionCode(closed, {})).toBe(Code.Unauthenticated);
    expect(await reflectionCode(closed, { key: k.readerA })).toBe("ok");
  });
});

describe("without keys (development mode)", () => {
  it("warns at startup and when health turns SERVING", () => {
    const warnings = dev.logs.filter((l) => l.level === "warn");
    expect(warnings.map((l) => l.msg)).toEqual([
      expect.stringContaining("DEVELOPMENT MODE"),
      expect.stringContaining("health is SERVING in DEVELOPMENT MODE"),
    ]);
    expect(warnings[1]).toMatchObject({ auth: "none (development mode)", tls: false });
  });
  it("acts for the tenant named by x-tenant-id, and needs it", async () => {
    const tenant = newTenant();
    const client = authClient(WorkflowStateService, dev.baseUrl, { tenant });
    expect(await codeOf(client.getWorkflowExecution({ executionId: "x" }))).toBe(Code.NotFound);
    expect(await codeOf(authClient(WorkflowStateService, dev.baseUrl, {}).getWorkflowExecution({ executionId: "x" }))).toBe(
      Code.InvalidArgument,
    );
  });
  it("ignores an authorization header", async () => {
    const client = authClient(WorkflowStateService, dev.baseUrl, { tenant: newTenant(), key: "not-a-configured-key" });
    expect(await codeOf(client.getWorkflowExecution({ executionId: "x" }))).toBe(Code.NotFound);
  });
});
