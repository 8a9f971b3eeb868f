import * as http2 from "node:http2";
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { kPrincipal } from "../../auth/auth-interceptor.js";
import type { Release } from "../../limits/tenant-limiter.js";
import { type Admission, kRefusal, type Verdict } from "../admission.js";
import {
  type Compression,
  envelopeCompress,
  grpcStatusOk,
  type Serialization,
  setTrailerStatus,
  type validateUniversalHandlerOptions,
} from "./connect-internals.js";
import { rewriteGrpcTrailer } from "./decode-errors.js";
import { UnaryHandlerCall, type UnarySpec } from "./handler-call.js";
import { RequestEnvelopes } from "./request-envelopes.js";
import { NodeRequestHeaders } from "./request-headers.js";
import { errorFromResetCode } from "./reset-codes.js";

// One unary gRPC call served off its HTTP/2 stream (index.ts says why):
// admitted, read, run through the interceptors, answered as Connect's gRPC
// handler answers.

type Message = MessageShape<DescMessage>;

/** A unary method as the fast path serves it (routes.ts builds one per method). */
export interface UnaryRoute {
  spec: UnarySpec;
  interceptors: Interceptor[];
  admission: Admission;
  readMaxBytes: number;
  input: Serialization<Message>;
  output: Serialization<Message>;
}

/** What every call of one fast path shares. */
export interface FastPathState {
  opt: ReturnType<typeof validateUniversalHandlerOptions>;
  /** Calls whose signal the shutdown signal must abort. */
  inFlight: Set<UnaryHandlerCall>;
  /** The response compression for a grpc-accept-encoding value, and the response headers that go with it. */
  negotiate(acceptEncoding: string | null): Negotiated;
}

/** The response compression for a grpc-accept-encoding value, and the response headers that go with it. */
export interface Negotiated {
  compression: Compression | null;
  responseHeader: Readonly<Record<string, string>>;
}

// The response headers and trailers a call starts with (node:http2 copies
// what it is given; they are shared, never changed).
const OK_TRAILER: Readonly<Record<string, string>> = Object.freeze({ "grpc-status": grpcStatusOk });
const WAIT_FOR_TRAILERS = Object.freeze({ waitForTrailers: true });

// What a finished call's context is aborted with, as Connect does when a call
// ends (its reason: an AbortError). One shared instance: creating a
// DOMException per call was one of the costs measured above.
const CALL_ENDED = new DOMException("This operation was aborted", "AbortError");

const kCall = Symbol("grpc unary fast path call");
type FastStream = http2.ServerHttp2Stream & { [kCall]?: GrpcUnaryCall };

/**
 * One call on the fast path: once admitted (its tenant's turn taken), reads
 * the request off the stream, runs it, writes the answer; a refused call
 * runs through the interceptors with an empty request, its body never read.
 */
export class GrpcUnaryCall {
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
export function header(headers: http2.IncomingHttpHeaders, name: string): string | null {
  const value = headers[name];
  if (value === undefined) return null;
  return typeof value === "string" ? value : value.join(", ");
}
