import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type HandlerContext,
} from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/health/v1/health_pb.js";
import { createHealthService, type HealthService } from "../src/health/health-service.js";
import { nextWithin as nextWithinMs } from "./support/streams.js";

const WORKFLOW = "orchestration.state.v1.WorkflowStateService";
const BREAKER = "orchestration.state.v1.CircuitBreakerService";

let server: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();
let health: HealthService;
let client: Client<typeof Health>;

beforeAll(async () => {
  health = createHealthService([WORKFLOW, BREAKER]);
  server = http2.createServer(
    connectNodeAdapter({ routes: (router) => router.service(Health, health.impl) }),
  );
  // server.close() waits for open HTTP/2 sessions, and the client keeps its
  // session alive, so afterAll closes them itself.
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  client = createClient(
    Health,
    createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }),
  );
});

afterAll(async () => {
  for (const session of sessions) session.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  health.setAll(ServingStatus.SERVING);
});

/** The next watch message, failing after 2 s instead of hanging. */
const nextWithin = <T>(it: AsyncIterator<T>) => nextWithinMs(it, 2_000);

describe("grpc.health.v1.Health/Check", () => {
  it("starts NOT_SERVING until the server says it is ready", async () => {
    const fresh = createHealthService([WORKFLOW]);
    // Called directly: Check does not use its context.
    const req = create(HealthCheckRequestSchema, { service: WORKFLOW });
    expect(await fresh.impl.check(req, {} as HandlerContext)).toEqual({
      status: ServingStatus.NOT_SERVING,
    });
  });

  it("answers SERVING for the server and for a registered service", async () => {
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await client.check({ service: WORKFLOW })).status).toBe(ServingStatus.SERVING);
  });

  it("reports a per-service status set with setStatus", async () => {
    health.setStatus(BREAKER, ServingStatus.NOT_SERVING);
    expect((await client.check({ service: BREAKER })).status).toBe(ServingStatus.NOT_SERVING);
    expect((await client.check({ service: WORKFLOW })).status).toBe(ServingStatus.SERVING);
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.SERVING);
  });

  it("answers NOT_FOUND for an unknown service", async () => {
    const err = await client.check({ service: "no.such.Service" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
  });

  it("sets everything at once with setAll", async () => {
    health.setAll(ServingStatus.NOT_SERVING);
    for (const service of ["", WORKFLOW, BREAKER]) {
      expect((await client.check({ service })).status).toBe(ServingStatus.NOT_SERVING);
    }
  });
});

describe("grpc.health.v1.Health/List", () => {
  it("lists the overall and every registered service status", async () => {
    health.setStatus(BREAKER, ServingStatus.NOT_SERVING);
    const res = await client.list({});
    const statuses = Object.fromEntries(
      Object.entries(res.statuses).map(([name, s]) => [name, s.status]),
    );
    expect(statuses).toEqual({
      "": ServingStatus.SERVING,
      [WORKFLOW]: ServingStatus.SERVING,
      [BREAKER]: ServingStatus.NOT_SERVING,
    });
  });
});

describe("grpc.health.v1.Health/Watch", () => {
  it("sends the current status, then each change", async () => {
    const abort = new AbortController();
    const it = client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.SERVING);
      health.setAll(ServingStatus.NOT_SERVING);
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.NOT_SERVING);
      health.setStatus("", ServingStatus.SERVING);
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.SERVING);
    } finally {
      abort.abort();
    }
  });

  it("does not send changes of other services", async () => {
    const abort = new AbortController();
    const it = client.watch({ service: WORKFLOW }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.SERVING);
      health.setStatus(BREAKER, ServingStatus.NOT_SERVING);
      health.setStatus("", ServingStatus.NOT_SERVING);
      health.setStatus(WORKFLOW, ServingStatus.NOT_SERVING);
      // The first message after SERVING must be WORKFLOW's own change.
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.NOT_SERVING);
      health.setStatus(WORKFLOW, ServingStatus.SERVING);
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.SERVING);
    } finally {
      abort.abort();
    }
  });

  it("sends SERVICE_UNKNOWN for an unknown service and keeps watching", async () => {
    const name = "late.registered.Service";
    const abort = new AbortController();
    const it = client.watch({ service: name }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
      health.setStatus(name, ServingStatus.SERVING);
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.SERVING);
    } finally {
      abort.abort();
    }
  });

  it("ends, and releases its listener, when the client cancels", async () => {
    await vi.waitFor(() => expect(health.watchCount()).toBe(0));
    const abort = new AbortController();
    const it = client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await nextWithin(it)).value?.status).toBe(ServingStatus.SERVING);
    expect(health.watchCount()).toBe(1);

    abort.abort();
    const err = await nextWithin(it).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.Canceled);
    // The server notices the cancelled HTTP/2 stream and its generator returns.
    await vi.waitFor(() => expect(health.watchCount()).toBe(0), { timeout: 2000 });

    // Later changes reach nobody and must not throw.
    health.setAll(ServingStatus.NOT_SERVING);
    expect((await client.check({ service: "" })).status).toBe(ServingStatus.NOT_SERVING);
  });

  it("ends open watches with UNAVAILABLE when the server shuts down", async () => {
    // A server of its own, wired the way server.ts should be: aborting the
    // adapter's shutdownSignal aborts every handler's signal.
    const own = createHealthService();
    own.setAll(ServingStatus.SERVING);
    const shutdown = new AbortController();
    const srv = http2.createServer(
      connectNodeAdapter({
        routes: (router) => router.service(Health, own.impl),
        shutdownSignal: shutdown.signal,
      }),
    );
    const ownSessions = new Set<http2.ServerHttp2Session>();
    srv.on("session", (s) => ownSessions.add(s));
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = srv.address() as AddressInfo;
      const ownClient = createClient(
        Health,
        createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }),
      );
      const it = ownClient.watch({ service: "" })[Symbol.asyncIterator]();
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.SERVING);
      own.setAll(ServingStatus.NOT_SERVING);
      expect((await nextWithin(it)).value?.status).toBe(ServingStatus.NOT_SERVING);

      shutdown.abort();
      const err = await nextWithin(it).catch((e: unknown) => e);
      expect(ConnectError.from(err).code).toBe(Code.Unavailable);
      expect(own.watchCount()).toBe(0);
    } finally {
      for (const s of ownSessions) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });

  it("ends many cancelled watches without leaking listeners", async () => {
    const aborts = Array.from({ length: 20 }, () => new AbortController());
    const iterators = aborts.map((a, i) =>
      client
        .watch({ service: i % 2 ? WORKFLOW : "unknown.Service" }, { signal: a.signal })
        [Symbol.asyncIterator](),
    );
    await Promise.all(iterators.map((it) => nextWithin(it)));
    expect(health.watchCount()).toBe(20);
    for (const a of aborts) a.abort();
    await Promise.all(iterators.map((it) => nextWithin(it).catch(() => undefined)));
    await vi.waitFor(() => expect(health.watchCount()).toBe(0), { timeout: 2000 });
  });
});
