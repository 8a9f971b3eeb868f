import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { keyAdmission } from "../../src/server/admission.js";
import { installGrpcFastPath } from "../../src/server/grpc-fast-path/index.js";
import { serviceRegistration } from "../../src/server/service-registration.js";
import { envelope, type WireAnswer, wireCall } from "../support/grpc-wire.js";

// What a handler and its interceptors see of a call on the fast path: the
// same as on Connect's gRPC handler. A probe service (Health's Check, with the
// behaviour named by the request's `service`) runs behind two interceptors on
// two servers, one with the fast path and one without; each records what it
// saw per call (the x-probe-id header), and the records and the answers on
// the wire must be the same.

const kProbe = createContextKey<string | undefined>(undefined, { description: "set by the probe interceptor" });

/** What a handler saw: its context, and how its signal ended. */
type Seen = Record<string, unknown>;

interface ProbeServer {
  session: http2.ClientHttp2Session;
  seen: Map<string, Seen>;
  /** Resolves when the handler of the call `id` is running. */
  started(id: string): Promise<void>;
  shutdown(reason: unknown): void;
  /** GRPC unary calls the fast path took (0 without it). */
  fastCalls(): number;
  close(): Promise<void>;
}

function reasonOf(signal: AbortSignal): Seen {
  const r: unknown = signal.reason;
  return r instanceof ConnectError ? { code: Code[r.code], message: r.rawMessage } : { name: (r as Error)?.name, message: (r as Error)?.message };
}

async function startProbeServer(withFastPath: boolean): Promise<ProbeServer> {
  const seen = new Map<string, Seen>();
  const running = new Map<string, () => void>();
  const waiting = new Map<string, Promise<void>>();
  const started = (id: string) => {
    let p = waiting.get(id);
    if (p === undefined) {
      p = new Promise<void>((resolve) => running.set(id, resolve));
      waiting.set(id, p);
    }
    return p;
  };
  const probeId = (ctx: HandlerContext) => ctx.requestHeader.get("x-probe-id") ?? "";
  const untilAborted = (signal: AbortSignal) =>
    new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));

  const impl: Partial<ServiceImpl<typeof Health>> = {
    async check(req, ctx) {
      const id = probeId(ctx);
      void started(id);
      running.get(id)?.();
      switch (req.service) {
        case "context": {
          const timeout = ctx.timeoutMs();
          seen.set(id, {
            method: ctx.method.name,
            service: ctx.service.typeName,
            requestMethod: ctx.requestMethod,
            protocolName: ctx.protocolName,
            url: ctx.url.replace(/:\d+\//, ":PORT/"),
            header: ctx.requestHeader.get("x-custom"),
            joined: ctx.requestHeader.get("x-twice"),
            // Not a header name Headers takes: it throws, on both paths.
            pseudo: (() => {
              try {
                return ctx.requestHeader.has(":authority");
              } catch (err) {
                return (err as Error).name;
              }
            })(),
            fromInterceptor: ctx.values.get(kProbe),
            timeout: timeout === undefined ? "none" : timeout > 0 && timeout <= 5_000,
            aborted: ctx.signal.aborted,
          });
          return { status: ServingStatus.SERVING };
        }
        case "headers":
          ctx.responseHeader.set("x-from-handler", "h");
          ctx.responseHeader.append("x-twice", "1");
          ctx.responseHeader.append("x-twice", "2");
          ctx.responseTrailer.set("x-trailer-from-handler", "t");
          return { status: ServingStatus.SERVING };
        case "details":
          throw new ConnectError("a precondition failed", Code.FailedPrecondition, { "x-error-meta": "m" }, [
            { desc: HealthCheckRequestSchema, value: create(HealthCheckRequestSchema, { service: "a detail" }) },
          ]);
        case "not-connect-error":
          throw new Error("a bug, with SQL text in it");
        case "until-aborted": {
          const { signal } = ctx;
          await untilAborted(signal);
          seen.set(id, reasonOf(signal));
          return { status: ServingStatus.SERVING };
        }
        case "late-signal":
          // The signal is first read after the client went away.
          await new Promise((resolve) => setTimeout(resolve, 300));
          seen.set(id, { aborted: ctx.signal.aborted, ...reasonOf(ctx.signal) });
          return { status: ServingStatus.SERVING };
        case "after-the-call": {
          const { signal } = ctx;
          setTimeout(() => seen.set(id, { aborted: signal.aborted, ...reasonOf(signal) }), 100);
          return { status: ServingStatus.SERVING };
        }
        default:
          return { status: ServingStatus.UNKNOWN };
      }
    },
  };

  // Outermost: copies the request and the response, as interceptors may; the
  // call's signal and headers must survive the copies.
  const copying: Interceptor = (next) => async (req) => {
    const res = await next({ ...req });
    if (res.stream) return res;
    if (req.header.get("x-replace") === null) return { ...res };
    // New header and trailer objects replace the call's.
    return {
      ...res,
      header: new Headers([...res.header, ["x-replaced", "r"]]),
      trailer: new Headers([...res.trailer, ["x-replaced-trailer", "r"]]),
    };
  };
  const probe: Interceptor = (next) => async (req) => {
    req.contextValues.set(kProbe, `${req.header.get("x-custom")} seen by ${req.method.name}`);
    const res = await next(req);
    res.header.set("x-from-interceptor", "i");
    res.trailer.set("x-trailer-from-interceptor", "j");
    return res;
  };

  const shutdown = new AbortController();
  const services = [serviceRegistration(Health, impl, { interceptors: [copying, probe] }, keyAdmission(() => ({ principal: undefined })))];
  const options = { readMaxBytes: 64 * 1024, shutdownSignal: shutdown.signal, acceptCompression: [compressionGzip, compressionBrotli] };
  const handler = connectNodeAdapter({ ...options, routes: (router) => services.forEach((s) => router.service(Health, impl, s.options)) });
  const server = http2.createServer(handler);
  const fastPath = withFastPath ? installGrpcFastPath(server, services, { ...options, readMaxBytesOf: () => options.readMaxBytes }) : undefined;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return {
    session,
    seen,
    started,
    shutdown: (reason) => shutdown.abort(reason),
    fastCalls: () => fastPath?.served ?? 0,
    async close() {
      session.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function checkBody(service: string): Buffer {
  return envelope(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })));
}

const PATH = "/grpc.health.v1.Health/Check";

describe("a handler on the gRPC unary fast path sees what Connect's gRPC handler gives it", () => {
  let fast: ProbeServer;
  let connect: ProbeServer;
  beforeAll(async () => {
    [fast, connect] = await Promise.all([startProbeServer(true), startProbeServer(false)]);
  });
  afterAll(async () => {
    await Promise.all([fast?.close(), connect?.close()]);
  });

  async function both(service: string, headers: http2.OutgoingHttpHeaders = {}): Promise<[WireAnswer, WireAnswer]> {
    const req = { path: PATH, headers: { "x-probe-id": service, ...headers }, body: checkBody(service) };
    return Promise.all([wireCall(fast.session, req), wireCall(connect.session, req)]);
  }

  it("its context: method, service, protocol, URL, request headers, values set by an interceptor, the deadline", async () => {
    const before = fast.fastCalls();
    const [a, b] = await both("context", { "x-custom": "c", "x-twice": ["1", "2"], "grpc-timeout": "5S" });
    expect(a).toEqual(b);
    expect(fast.seen.get("context")).toEqual(connect.seen.get("context"));
    expect(fast.seen.get("context")).toMatchObject({ header: "c", joined: "1, 2", fromInterceptor: "c seen by Check", timeout: true, aborted: false });
    expect(fast.fastCalls() - before).toBe(1);
  });

  it("response headers and trailers set by the handler and by an interceptor reach the client", async () => {
    const [a, b] = await both("headers");
    expect(a).toEqual(b);
    expect(a.headers).toMatchObject({ "x-from-handler": "h", "x-twice": "1, 2", "x-from-interceptor": "i" });
    expect(a.trailers).toMatchObject({ "x-trailer-from-handler": "t", "x-trailer-from-interceptor": "j", "grpc-status": "0" });
  });

  it("response headers and trailers an interceptor replaces with new objects are the ones sent", async () => {
    const [a, b] = await both("headers", { "x-replace": "yes" });
    expect(a).toEqual(b);
    expect(a.headers).toMatchObject({ "x-from-handler": "h", "x-replaced": "r" });
    expect(a.trailers).toMatchObject({ "x-trailer-from-handler": "t", "x-replaced-trailer": "r", "grpc-status": "0" });
  });

  it("an error with metadata and details: the status, message, metadata and grpc-status-details-bin", async () => {
    const [a, b] = await both("details");
    expect(a).toEqual(b);
    expect(a.trailers).toMatchObject({ "grpc-status": String(Code.FailedPrecondition), "x-error-meta": "m" });
    expect(a.trailers["grpc-status-details-bin"]).toBeDefined();
  });

  it("an error that is not a ConnectError: INTERNAL, without its message", async () => {
    const [a, b] = await both("not-connect-error");
    expect(a).toEqual(b);
    expect(a.trailers).toMatchObject({ "grpc-status": String(Code.Internal), "grpc-message": "internal%20error" });
  });

  it("the deadline (grpc-timeout) aborts the handler's signal with DEADLINE_EXCEEDED", async () => {
    const [a, b] = await both("until-aborted", { "grpc-timeout": "100m" });
    expect(a).toEqual(b);
    expect(fast.seen.get("until-aborted")).toEqual(connect.seen.get("until-aborted"));
    expect(fast.seen.get("until-aborted")).toEqual({ code: "DeadlineExceeded", message: "the operation timed out" });
  });

  it("a client that resets the stream aborts the handler's signal with CANCELED", async () => {
    const id = "cancelled";
    for (const s of [fast, connect]) {
      const stream = s.session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers", "x-probe-id": id });
      stream.on("error", () => {});
      stream.end(checkBody("until-aborted"));
      await s.started(id);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await expect.poll(() => s.seen.get(id)).toBeDefined();
    }
    expect(fast.seen.get(id)).toEqual(connect.seen.get(id));
    expect(fast.seen.get(id)).toEqual({ code: "Canceled", message: "http/2 stream closed with error code CANCEL (0x8)" });
  });

  it("a signal first read after the client went away is already aborted", async () => {
    const id = "late";
    for (const s of [fast, connect]) {
      const stream = s.session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers", "x-probe-id": id });
      stream.on("error", () => {});
      stream.end(checkBody("late-signal"));
      await s.started(id);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await expect.poll(() => s.seen.get(id)).toBeDefined();
    }
    expect(fast.seen.get(id)).toEqual(connect.seen.get(id));
    expect(fast.seen.get(id)).toMatchObject({ aborted: true, code: "Canceled" });
  });

  it("the signal is aborted once the call is over", async () => {
    await both("after-the-call");
    for (const s of [fast, connect]) await expect.poll(() => s.seen.get("after-the-call")).toBeDefined();
    expect(fast.seen.get("after-the-call")).toEqual(connect.seen.get("after-the-call"));
    expect(fast.seen.get("after-the-call")).toEqual({ aborted: true, name: "AbortError", message: "This operation was aborted" });
  });

  it("shutdown aborts the signal of a call in flight with its reason, and the call still answers", async () => {
    const id = "shutdown";
    const answers = [fast, connect].map(async (s) => {
      const answer = wireCall(s.session, { path: PATH, headers: { "x-probe-id": id }, body: checkBody("until-aborted") });
      await s.started(id);
      s.shutdown(new ConnectError("the server is shutting down", Code.Unavailable));
      return answer;
    });
    const [a, b] = await Promise.all(answers);
    expect(a).toEqual(b);
    expect(a.trailers["grpc-status"]).toBe("0");
    expect(fast.seen.get(id)).toEqual(connect.seen.get(id));
    expect(fast.seen.get(id)).toEqual({ code: "Unavailable", message: "the server is shutting down" });
    // A call that arrives after shutdown starts with its signal aborted.
    const [c, d] = await both("context");
    expect(c).toEqual(d);
    expect(fast.seen.get("context")).toMatchObject({ aborted: true });
    expect(fast.seen.get("context")).toEqual(connect.seen.get("context"));
  });
});
