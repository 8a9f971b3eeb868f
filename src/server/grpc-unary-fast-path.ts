import * as http2 from "node:http2";
import { create, type DescMessage, type DescMethod, type DescService, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createServiceImplSpec,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import {
  type Compression,
  compressionNegotiate,
  createMethodSerializationLookup,
  envelopeCompress,
  type Serialization,
  validateUniversalHandlerOptions,
} from "@connectrpc/connect/protocol";
import {
  contentTypeProto,
  grpcStatusOk,
  headerAcceptEncoding,
  parseTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import { kPrincipal } from "../auth/auth-interceptor.js";
import type { Release } from "../limits/tenant-limiter.js";
import { rewriteGrpcTrailer } from "../validation/request-decoding.js";
import { type Admission, kRefusal, type Verdict } from "./admission.js";
import { RequestEnvelopes } from "./grpc-request-envelopes.js";
import { errorFromResetCode } from "./h2-reset-error.js";
import { joinRepeatedAuthorization, NodeRequestHeaders } from "./node-request-headers.js";
import { UnaryHandlerCall, type UnarySpec } from "./unary-handler-call.js";

// Why this exists (issue 6, B0: our stack at least 0.8 of bare @grpc/grpc-js
// on a no-op unary RPC; grpc.health.v1.Health/Check through our interceptors,
// server on core 0, h2load on core 1, one connection, 32 calls in flight).
//
// Connect-Node serves even a unary gRPC call through its streaming machinery:
// node:http2's compatibility request and response objects, an async-generator
// pipeline over the body (split, decompress, parse, invoke, serialize,
// compress, join, catch), two AbortControllers per call aborted at the end
// without a reason (a DOMException with a stack trace each), header
// conversions both ways. That came to 0.08-0.2 of grpc-js's calls/s (about
// 700 µs of CPU per call against 60-110 µs on this shared machine); no
// configuration came near 0.8 (without logging, the decode-error rewriting,
// the shutdown signal, compression or any interceptor at all, Connect stayed
// at 0.15-0.2). Its profile: 16% garbage collection, 11% the async-iterable
// pipeline, 5% DOMException creation, 3% AbortController work, the rest thin.
//
// This path serves the common case, a unary call in the gRPC protocol
// (`application/grpc` or `application/grpc+proto`, an uncompressed request)
// straight off the HTTP/2 stream: it reads the one enveloped message and runs
// the same ServiceImpl method through the same per-service interceptors
// (UnaryHandlerCall: Connect's handler context and interceptor chain, made
// lazily), with Connect's own pieces where they are cheap: its serialization
// with readMaxBytes, parseTimeout, compressionNegotiate and envelopeCompress,
// setTrailerStatus, and withRequestDecodeErrors' rewrite of undecodable
// requests. Headers, the enveloped answer and the trailers go out as from
// Connect's gRPC handler; the tests compare the two byte for byte. Everything
// else goes to Connect unchanged: streaming methods, gRPC-Web, the Connect
// protocol, `application/grpc+json`, compressed requests, an invalid
// grpc-timeout, HTTP/1.1, unknown paths. Measured the same way (on a machine
// shared with other load: ratios of runs back to back), our server then
// answered 1.11 of grpc-js's calls/s (median of 8 rounds; about 10,000-13,000
// calls/s each) when the machine was quiet, and 0.65-1.15 (medians of five
// sessions) under heavy load from other processes; 0.83-1.09 with both
// servers loaded at once on the same core. What mattered besides skipping the
// pipeline: no per-call object literal with getters (each got a hidden class
// of its own; garbage collection fell from 20% of the time to 3%), no
// AbortSignal and no Headers unless something reads them, and in our
// interceptors the one-shot SHA-256 (src/auth/key-store.ts) and one stdout
// write per event-loop turn (src/logging/logger.ts). Method and the latest
// figures: docs/performance.md (B0).

/**
 * One service as it is registered on the router (the three things
 * router.service takes), and how its unary calls are admitted before their
 * body is read (admission.ts).
 */
export interface ServiceRegistration {
  service: DescService;
  /** The implementation of `service` (built with `serviceRegistration`, which checks that it fits). */
  impl: object;
  options: { interceptors: Interceptor[] };
  admission: Admission;
}

/** A registration whose implementation is checked against its service. */
export function serviceRegistration<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  options: { interceptors: Interceptor[] },
  admission: Admission,
): ServiceRegistration {
  return { service, impl, options, admission };
}

/** The adapter options the fast path honours; pass the same values as to connectNodeAdapter. */
export interface GrpcUnaryFastPathOptions {
  /** The largest request of a method (Connect's readMaxBytes, per method: see server.ts). */
  readMaxBytesOf: (method: DescMethod) => number;
  shutdownSignal: AbortSignal;
  acceptCompression: Compression[];
}

/** Serves unary gRPC calls of registered services directly off their HTTP/2 streams. */
export interface GrpcUnaryFastPath {
  /**
   * Serves the call when it is one this path handles and returns true;
   * returns false, having touched nothing, for every other request.
   */
  serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  /** Calls served so far (tests check that gRPC unary calls take this path). */
  readonly served: number;
}

type Message = MessageShape<DescMessage>;

interface UnaryRoute {
  spec: UnarySpec;
  interceptors: Interceptor[];
  admission: Admission;
  readMaxBytes: number;
  input: Serialization<Message>;
  output: Serialization<Message>;
}

/** What every call of one fast path shares. */
interface FastPathState {
  opt: ReturnType<typeof validateUniversalHandlerOptions>;
  /** Calls whose signal the shutdown signal must abort. */
  inFlight: Set<UnaryHandlerCall>;
  /** The response compression for a grpc-accept-encoding value, and the response headers that go with it. */
  negotiate(acceptEncoding: string | null): Negotiated;
}

interface Negotiated {
  compression: Compression | null;
  responseHeader: Readonly<Record<string, string>>;
}

// The response headers and trailers a call starts with (node:http2 copies
// what it is given; they are shared, never changed).
const OK_TRAILER: Readonly<Record<string, string>> = Object.freeze({ "grpc-status": grpcStatusOk });
const WAIT_FOR_TRAILERS = Object.freeze({ waitForTrailers: true });

/**
 * Connect's compressionNegotiate for requests without compression, remembered
 * per grpc-accept-encoding value (a client sends the same one on every call).
 */
function createNegotiation(acceptCompression: Compression[]): (acceptEncoding: string | null) => Negotiated {
  const known = new Map<string | null, Negotiated>();
  return (acceptEncoding) => {
    const remembered = known.get(acceptEncoding);
    if (remembered !== undefined) return remembered;
    const compression = compressionNegotiate(acceptCompression, null, acceptEncoding, headerAcceptEncoding).response;
    const responseHeader: Record<string, string> = { "content-type": contentTypeProto };
    if (compression !== null) responseHeader["grpc-encoding"] = compression.name;
    const negotiated = { compression, responseHeader: Object.freeze(responseHeader) };
    if (known.size < 100) known.set(acceptEncoding, negotiated);
    return negotiated;
  };
}

const GRPC_CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);

// What a finished call's context is aborted with, as Connect does when a call
// ends (its reason: an AbortError). One shared instance: creating a
// DOMException per call was one of the costs measured above.
const CALL_ENDED = new DOMException("This operation was aborted", "AbortError");

/** Builds the fast path for the unary methods of `services`. */
export function createGrpcUnaryFastPath(services: readonly ServiceRegistration[], options: GrpcUnaryFastPathOptions): GrpcUnaryFastPath {
  // Connect's defaults (writeMaxBytes, compressMinBytes, maxTimeoutMs) for the options we leave unset.
  const opt = validateUniversalHandlerOptions({ shutdownSignal: options.shutdownSignal, acceptCompression: options.acceptCompression });
  const routes = new Map<string, UnaryRoute>();
  for (const { service, impl, options: serviceOptions, admission } of services) {
    const spec = createServiceImplSpec(service, impl);
    for (const method of Object.values(spec.methods)) {
      if (method.kind !== "unary") continue;
      const readMaxBytes = options.readMaxBytesOf(method.method);
      const serialization = createMethodSerializationLookup(method.method, undefined, undefined, { ...opt, readMaxBytes });
      routes.set(`/${service.typeName}/${method.method.name}`, {
        spec: method,
        interceptors: serviceOptions.interceptors,
        admission,
        readMaxBytes,
        input: serialization.getI(true),
        output: serialization.getO(true),
      });
    }
  }

  const state: FastPathState = { opt, inFlight: new Set(), negotiate: createNegotiation(opt.acceptCompression) };
  // One listener for every call in flight (Connect links each call's signal to it).
  opt.shutdownSignal?.addEventListener("abort", () => {
    for (const call of state.inFlight) call.abort(opt.shutdownSignal!.reason);
  });
  const fastPath = {
    served: 0,
    serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
      if (headers[":method"] !== "POST") return false;
      const route = routes.get(headers[":path"] ?? "");
      if (route === undefined) return false;
      const contentType = headers["content-type"];
      if (contentType === undefined || !GRPC_CONTENT_TYPES.has(contentType)) return false;
      const encoding = headers["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      let timeoutMs: number | undefined;
      if (headers["grpc-timeout"] !== undefined) {
        const timeout = parseTimeout(header(headers, "grpc-timeout"), opt.maxTimeoutMs);
        if (timeout.error !== undefined) return false;
        timeoutMs = timeout.timeoutMs;
      }
      fastPath.served++;
      // Decided from the headers, before a byte of the body is read (admission.ts).
      const verdict = route.admission.check(route.spec.method, (name) => header(headers, name));
      new GrpcUnaryCall(stream, headers, route, timeoutMs, state, verdict);
      return true;
    },
  };
  return fastPath;
}

/**
 * Lets `fastPath` take each new HTTP/2 stream before node:http2's
 * compatibility layer (which turns streams into the request events Connect's
 * adapter handles) sees it; streams it does not take reach that layer as before.
 * HTTP/1.1 requests (TLS with allowHTTP1) never arrive as streams: unchanged.
 */
export function serveGrpcUnaryFirst(server: http2.Http2Server | http2.Http2SecureServer, fastPath: GrpcUnaryFastPath): void {
  // node:http2 installs its compatibility layer as a "stream" listener when a
  // request listener is given; it must be the only one, so that a stream
  // taken here is not also answered there.
  const compat = server.listeners("stream") as ((...args: unknown[]) => void)[];
  if (compat.length !== 1) {
    throw new Error(`expected node:http2's compatibility layer as the only "stream" listener, found ${compat.length}`);
  }
  const toCompat = compat[0]!;
  server.removeAllListeners("stream");
  server.on("stream", function (this: unknown, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) {
    // rest: flags, rawHeaders. The compatibility layer's request shares
    // `headers`, so both paths see several authorization fields joined.
    joinRepeatedAuthorization(headers, rest[1] as string[] | undefined);
    if (!fastPath.serve(stream, headers)) toCompat.call(this, stream, headers, ...rest);
  });
}

const kCall = Symbol("grpc unary fast path call");
type FastStream = http2.ServerHttp2Stream & { [kCall]?: GrpcUnaryCall };

/**
 * One call on the fast path: once admitted (its tenant's turn taken), reads
 * the request off the stream, runs it, writes the answer; a refused call
 * runs through the interceptors with an empty request, its body never read.
 */
class GrpcUnaryCall {
  private readonly call: UnaryHandlerCall;
  private readonly envelopes: RequestEnvelopes;
  private readonly compression: Compression | null;
  private finished = false;
  /** The tenant's turn, given back when the stream closes (the answer has left, or the client went away). */
  private release: Release | undefined;

  constructor(
    private readonly stream: FastStream,
    headers: http2.IncomingHttpHeaders,
    private readonly route: UnaryRoute,
    timeoutMs: number | undefined,
    private readonly state: FastPathState,
    verdict: Verdict,
  ) {
    const { opt } = state;
    const negotiated = state.negotiate(header(headers, "grpc-accept-encoding"));
    this.compression = negotiated.compression;
    // Made when the call arrives, as Connect does: the deadline counts from here.
    this.call = new UnaryHandlerCall(
      route.spec,
      `${headers[":scheme"] ?? "http"}://${headers[":authority"] ?? headers.host ?? ""}${headers[":path"]}`,
      NodeRequestHeaders.of(headers),
      timeoutMs,
      negotiated.responseHeader,
      OK_TRAILER,
    );
    if (opt.shutdownSignal?.aborted === true) this.call.abort(opt.shutdownSignal.reason);
    else state.inFlight.add(this.call);
    this.envelopes = new RequestEnvelopes(route.readMaxBytes);
    // The listeners are shared functions (no closures per call); they find the call on the stream.
    stream[kCall] = this;
    // Errors of the stream end in "close"; without a listener they would be thrown.
    stream.on("error", ignore);
    stream.once("close", onStreamClose);
    if (verdict.refusal !== undefined) {
      // The logging interceptor names the key of a refused call, as when the auth interceptor refuses it.
      if (verdict.principal !== undefined) this.call.values.set(kPrincipal, verdict.principal);
      this.refuse(verdict.refusal);
      return;
    }
    // Waiting in the tenant's queue lasts until the call ends (deadline,
    // shutdown, the client went away); its signal is made only for a call that waits.
    const taken = route.admission.turn(verdict.tenant, () => this.call.signal);
    if (typeof taken === "function") {
      this.admitted(taken);
      return;
    }
    void taken.then(
      (release) => this.admitted(release),
      (err: unknown) => this.refuse(ConnectError.from(err)),
    );
  }

  /** Starts reading the request: the call has its turn. */
  private admitted(release: Release): void {
    if (this.finished) {
      release();
      return;
    }
    this.release = release;
    this.stream.on("data", onStreamData);
    this.stream.once("end", onStreamEnd);
  }

  /** Answers with `refusal` through the interceptors (its log line, its code), without reading the body. */
  private refuse(refusal: ConnectError): void {
    if (this.finished) return;
    this.call.values.set(kRefusal, refusal);
    void this.answer(create(this.route.spec.method.input));
  }

  onData(chunk: Buffer): void {
    if (this.finished) return; // answered already (too large): the rest is not read
    try {
      this.envelopes.push(chunk);
    } catch (err) {
      // Too large: answered at once, the rest is not read.
      this.finish(undefined, err);
    }
  }

  async onEnd(): Promise<void> {
    if (this.finished) return;
    let input;
    try {
      // As on Connect's path, a request that cannot be read never reaches the interceptors.
      input = decodeSingle(this.envelopes, this.route.input);
    } catch (err) {
      this.finish(undefined, err);
      return;
    }
    await this.answer(input);
  }

  /** Runs `input` through the interceptors to the handler, and writes the answer. */
  private async answer(input: Message): Promise<void> {
    let output;
    try {
      output = this.route.output.serialize(await this.call.run(input, this.route.interceptors));
    } catch (err) {
      this.finish(undefined, err);
      return;
    }
    const { compression } = this;
    const { compressMinBytes } = this.state.opt;
    if (compression === null || output.byteLength < compressMinBytes) {
      this.finish(envelope(0, output), undefined);
      return;
    }
    try {
      const compressed = await envelopeCompress({ flags: 0, data: output }, compression, compressMinBytes);
      this.finish(envelope(compressed.flags, compressed.data), undefined);
    } catch (err) {
      this.finish(undefined, err);
    }
  }

  /** The stream closed: after the answer, or before it (the client cancelled, or the connection went away). */
  onClose(): void {
    this.release?.();
    this.release = undefined;
    if (this.finished) return;
    this.finished = true;
    this.state.inFlight.delete(this.call);
    // The handler's signal says so, with the reason Connect gives.
    this.call.abort(errorFromResetCode(this.stream.rstCode));
  }

  private finish(message: Uint8Array | undefined, error: unknown): void {
    if (this.finished) return;
    this.finished = true;
    const { stream, call } = this;
    this.state.inFlight.delete(call);
    // As Connect: the call's signal ends with the call, aborted with its error if any.
    call.abort(error ?? CALL_ENDED);
    try {
      if (error !== undefined) {
        setTrailerStatus(
          call.responseTrailer,
          error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal, undefined, undefined, error),
        );
        // Undecodable request bytes answer INVALID_ARGUMENT, as on Connect's path (withRequestDecodeErrors).
        rewriteGrpcTrailer(call.responseTrailer);
      }
      if (stream.destroyed || stream.closed) return; // the client went away
      // node:http2 copies the headers (and adds :status 200 and the date).
      stream.respond(call.responseHeaderEntries(), WAIT_FOR_TRAILERS);
      stream.once("wantTrailers", onStreamWantTrailers);
      if (message === undefined) stream.end();
      else stream.end(message);
    } catch (err) {
      // E.g. a header value node:http2 refuses; Connect's adapter fails such a call too.
      console.error(`handler for rpc ${this.route.spec.method.name} of ${this.route.spec.method.parent.typeName} failed`, err);
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  }

  sendTrailers(): void {
    if (!this.stream.destroyed) this.stream.sendTrailers(this.call.responseTrailerEntries());
  }
}

function onStreamData(this: FastStream, chunk: Buffer): void {
  this[kCall]!.onData(chunk);
}

function onStreamEnd(this: FastStream): void {
  void this[kCall]!.onEnd();
}

function onStreamClose(this: FastStream): void {
  this[kCall]!.onClose();
}

function onStreamWantTrailers(this: FastStream): void {
  this[kCall]!.sendTrailers();
}

function ignore(): void {}

/**
 * Connect's encodeEnvelope, in a Buffer from Node's pool: Connect's new
 * Uint8Array and DataView cost a visible share of a no-op call.
 */
function envelope(flags: number, data: Uint8Array): Buffer {
  const bytes = Buffer.allocUnsafe(5 + data.byteLength);
  bytes[0] = flags;
  bytes.writeUInt32BE(data.byteLength, 1);
  bytes.set(data, 5);
  return bytes;
}

/**
 * The request message, or the error Connect's unary gRPC path raises, in the
 * same order: an incomplete envelope, a missing message, a compressed one
 * (the request said identity), bytes that do not parse, a second message.
 */
function decodeSingle(envelopes: RequestEnvelopes, input: Serialization<Message>): Message {
  const parse = (data: Uint8Array, flags: number) => {
    if ((flags & 0b00000001) !== 0) {
      throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
    }
    return input.parse(data);
  };
  const { first, second } = envelopes;
  if (first === undefined) {
    if (envelopes.pendingBytes > 0) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  }
  const message = parse(first.data, first.flags);
  if (second === undefined) {
    if (envelopes.pendingBytes > 0) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    return message;
  }
  parse(second.data, second.flags);
  throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
}

/** A header's value as Headers would give it (several values joined), or null. */
function header(headers: http2.IncomingHttpHeaders, name: string): string | null {
  const value = headers[name];
  if (value === undefined) return null;
  return typeof value === "string" ? value : value.join(", ");
}
