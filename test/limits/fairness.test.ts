// Per-tenant fairness: a tenant runs at most TENANT_CALLS_MAX calls at once;
// its next calls wait in its own queue, in arrival order, and past
// TENANT_QUEUE_MAX waiting calls answer RESOURCE_EXHAUSTED at once; another
// tenant's calls go straight through. A call holds its turn until its answer
// has been written, so answers its client does not read count against its
// own tenant only.
import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { WorkflowStatus } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { defaultConfig, loadConfig } from "../../src/config.js";
import { TenantLimiter } from "../../src/limits/tenant-limiter.js";
import { backendName } from "../support/backend.js";
import { workflowClient } from "../support/clients.js";
import { errorOf } from "../support/errors.js";
import { envelope, openWireStream } from "../support/grpc-wire.js";
import { newTenant, startTestServer, type TestServer } from "../support/server.js";

describe("TenantLimiter", () => {
  it("gives a tenant's turns past the maximum to its waiting calls in arrival order; other tenants never wait", async () => {
    const limiter = new TenantLimiter(2, 10);
    const a1 = limiter.acquire("a");
    const a2 = limiter.acquire("a");
    expect([typeof a1, typeof a2]).toEqual(["function", "function"]);
    const order: string[] = [];
    const waiting = ["a3", "a4", "a5"].map((name) => Promise.resolve(limiter.acquire("a")).then((release) => (order.push(name), release)));
    // Tenant b is not behind tenant a's queue.
    expect(typeof limiter.acquire("b")).toBe("function");
    expect(limiter.totals()).toEqual({ running: 3, waiting: 3 });
    (a1 as () => void)();
    (a2 as () => void)();
    const [r3, r4] = await Promise.all(waiting.slice(0, 2));
    expect(order).toEqual(["a3", "a4"]);
    r3!();
    const r5 = await waiting[2]!;
    expect(order).toEqual(["a3", "a4", "a5"]);
    r4!();
    r5!();
    r5!(); // a second release gives nothing back twice
    expect(limiter.totals()).toEqual({ running: 1, waiting: 0 });
  });

  it("answers RESOURCE_EXHAUSTED past the queue bound, and lets a waiting call leave when its signal aborts", async () => {
    const limiter = new TenantLimiter(1, 1);
    limiter.acquire("a");
    const stop = new AbortController();
    const waiting = limiter.acquire("a", stop.signal) as Promise<unknown>;
    const full = await (limiter.acquire("a") as Promise<unknown>).catch((e: unknown) => ConnectError.from(e));
    expect(full).toMatchObject({ code: Code.ResourceExhausted });
    stop.abort(new ConnectError("deadline", Code.DeadlineExceeded));
    expect(await waiting.catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.DeadlineExceeded);
    expect(limiter.totals()).toEqual({ running: 1, waiting: 0 });
  });
});

describe("TENANT_CALLS_MAX and TENANT_QUEUE_MAX", () => {
  it("default to 32 and 256, are read from the environment, and a malformed value names the variable", () => {
    expect([defaultConfig.tenantCallsMax, defaultConfig.tenantQueueMax]).toEqual([32, 256]);
    expect(loadConfig({ TENANT_CALLS_MAX: "4", TENANT_QUEUE_MAX: "0" })).toMatchObject({ tenantCallsMax: 4, tenantQueueMax: 0 });
    expect(() => loadConfig({ TENANT_CALLS_MAX: "0" })).toThrow(/TENANT_CALLS_MAX/);
    expect(() => loadConfig({ TENANT_QUEUE_MAX: "-1" })).toThrow(/TENANT_QUEUE_MAX/);
  });
});

describe(`one tenant's burst on ${backendName}`, () => {
  let t: TestServer;
  const tenant = newTenant();
  beforeAll(async () => {
    t = await startTestServer({ tenantCallsMax: 1, tenantQueueMax: 1 });
    // An execution whose answer (1 MiB, random hex) is far larger than a client's flow-control window.
    await workflowClient(t.baseUrl, tenant).saveWorkflowExecution({
      execution: { executionId: "big", workflowName: "w", status: WorkflowStatus.RUNNING, context: { blob: randomHex(1024 * 1024) } },
    });
  });
  afterAll(async () => {
    await t.close();
  });

  const unreadGets: [string, Record<string, string>][] = [
    ["gRPC (unary fast path)", {}],
    ["gRPC-Web (Connect's handler)", { "content-type": "application/grpc-web+proto" }],
  ];
  it.each(unreadGets)(
    "queues behind its own unread answer over %s: one call waits, the next answers RESOURCE_EXHAUSTED, another tenant is served",
    async (_path, headers) => {
      const session = http2.connect(t.baseUrl);
      session.on("error", () => {});
      try {
        // GetWorkflowExecution(big), whose answer the client does not read: the call keeps its tenant's one turn.
        const unread = openWireStream(session, {
          path: "/orchestration.state.v1.WorkflowStateService/GetWorkflowExecution",
          headers: { "x-tenant-id": tenant, "grpc-accept-encoding": "identity", ...headers },
          body: envelope(Uint8Array.of(0x0a, 3, 0x62, 0x69, 0x67)),
        });
        await unread.response;
        expect(t.server.stats()).toMatchObject({ turnsTaken: 1, turnsWaiting: 0 });

        const client = workflowClient(t.baseUrl, tenant);
        let waitedDone = false;
        const waited = client.getWorkflowExecution({ executionId: "big" }).finally(() => (waitedDone = true));
        await vi.waitFor(() => expect(t.server.stats().turnsWaiting).toBe(1), { timeout: 5_000, interval: 10 });
        expect((await errorOf(client.getWorkflowExecution({ executionId: "big" }))).code).toBe(Code.ResourceExhausted);
        // Another tenant goes straight through.
        expect((await errorOf(workflowClient(t.baseUrl, newTenant()).getWorkflowExecution({ executionId: "big" }))).code).toBe(Code.NotFound);
        expect(waitedDone).toBe(false);

        // Once the first answer is read, the waiting call has its turn.
        unread.stream.resume();
        expect((await waited).execution?.executionId).toBe("big");
        await vi.waitFor(() => expect(t.server.stats()).toMatchObject({ turnsTaken: 0, turnsWaiting: 0 }), { timeout: 5_000, interval: 10 });
      } finally {
        session.destroy();
      }
    },
  );
});

function randomHex(bytes: number): string {
  let s = "";
  while (s.length < bytes) s += Math.random().toString(16).slice(2);
  return s.slice(0, bytes);
}
