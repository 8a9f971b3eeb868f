import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { MAX_TIMER_MS } from "../../ranges.js";

type Message = MessageShape<DescMessage>;

/** A unary method's implementation, as createServiceImplSpec gives it. */
export type UnarySpec = MethodImplSpec & { kind: "unary" };

/**
 * One unary call's handler context, and its run through the interceptors to
 * the implementation: what Connect's `createHandlerContext` and
 * `invokeUnaryImplementation` (connect-es packages/connect/src/implementation.ts
 * and protocol/invoke-implementation.ts) do for a unary method, with the same
 * request, context and response shapes, in the same order:
 * - the interceptors wrap the implementation, the first outermost, and see a
 *   UnaryRequest with the call's headers, signal and context values;
 * - the implementation gets the context merged with the request its innermost
 *   interceptor passed on; its answer is normalized with `create`;
 * - the headers and trailers of the final response become the call's.
 *
 * Connect's own functions are not used because of their cost, which was most
 * of what was left of a no-op call once the fast path skipped the streaming
 * pipeline: two AbortControllers per call (one for the deadline, one linking
 * it with the request and shutdown signals), aborted at the end without a
 * reason (a DOMException each), three Headers. Here:
 * - the call's AbortSignal is made when something first reads it (group
 *   commit does; the health check does not); until then an abort is only
 *   remembered, and the signal, once read, is already aborted with that reason;
 * - the response headers and trailers are made when first read (most handlers
 *   never touch them; the fast path then writes its defaults);
 * - the request headers are NodeRequestHeaders, read from node:http2's object;
 * - the deadline is a timer, not a signal, and shutdown reaches the call
 *   through the fast path's one listener for all calls.
 * The abort reasons are Connect's: DEADLINE_EXCEEDED "the operation timed
 * out" at the deadline, the shutdown signal's reason, the client's reset as a
 * ConnectError, an AbortError when the call is over. One deliberate
 * difference: a deadline too far away for a Node timer (over 2^31-1 ms, ~24.8
 * days) is not armed, where Connect's timer would fire after 1 ms;
 * row-level-security.ts treats such a deadline as none too.
 */
export class UnaryHandlerCall {
  private controller: AbortController | undefined;
  private aborted = false;
  private abortReason: unknown;
  private timer: NodeJS.Timeout | undefined;
  readonly values: ContextValues = createContextValues();
  private resHeader: Headers | undefined;
  private resTrailer: Headers | undefined;

  /**
   * @param responseHeaderInit the response headers before the handler runs (content type, encoding)
   * @param responseTrailerInit the response trailers before the handler runs (grpc-status 0)
   */
  constructor(
    readonly spec: UnarySpec,
    readonly url: string,
    readonly requestHeader: Headers,
    timeoutMs: number | undefined,
    private readonly responseHeaderInit: Readonly<Record<string, string>>,
    private readonly responseTrailerInit: Readonly<Record<string, string>>,
  ) {
    if (timeoutMs === undefined) {
      this.timeoutMs = noDeadline;
      return;
    }
    const deadline = Date.now() + timeoutMs;
    this.timeoutMs = () => deadline - Date.now();
    if (timeoutMs <= 0) this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    else if (timeoutMs <= MAX_TIMER_MS) {
      this.timer = setTimeout(() => this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
    }
  }

  /** The call's signal: aborted at the deadline, on shutdown, when the client resets the stream, and when the call ends. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** Aborts the call's signal; the first reason counts (undefined: an AbortError). Stops the deadline timer. */
  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    clearTimeout(this.timer);
    this.controller?.abort(reason);
  }

  /** Milliseconds left to the deadline, as Connect's context counts them; undefined without one. */
  readonly timeoutMs: () => number | undefined;

  get responseHeader(): Headers {
    return (this.resHeader ??= new Headers(this.responseHeaderInit));
  }

  get responseTrailer(): Headers {
    return (this.resTrailer ??= new Headers(this.responseTrailerInit));
  }

  /** The response headers as they stand: the initial ones unless something read or changed them. */
  responseHeaderEntries(): Readonly<Record<string, string>> {
    return this.resHeader === undefined ? this.responseHeaderInit : fromHeaders(this.resHeader);
  }

  /** The response trailers as they stand (see responseHeaderEntries). */
  responseTrailerEntries(): Readonly<Record<string, string>> {
    return this.resTrailer === undefined ? this.responseTrailerInit : fromHeaders(this.resTrailer);
  }

  /** Runs `input` through `interceptors` to the implementation; resolves with the normalized answer. */
  async run(input: Message, interceptors: readonly Interceptor[]): Promise<Message> {
    const { spec } = this;
    let answer: UnaryResponse | undefined;
    const implementation = async (req: UnaryRequest): Promise<UnaryResponse> => {
      const message = create(spec.method.output, await spec.impl(req.message, new CallContext(this, req)));
      answer = new CallResponse(this, message);
      return answer;
    };
    // Connect's applyInterceptors: the first interceptor is the outermost.
    let next: (req: UnaryRequest) => Promise<UnaryResponse> = implementation;
    for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i]!(next as never) as typeof next;
    const res = await next(new CallRequest(this, input));
    // Connect's copyHeaders: the final response's headers become the call's
    // (nothing to do when it is the implementation's own answer).
    if (res !== answer) {
      copyHeaders(res.header, this.responseHeader);
      copyHeaders(res.trailer, this.responseTrailer);
    }
    return res.message;
  }
}

// Requests and responses pass through interceptors, which may copy them
// (`next({ ...req, message })`, `{ ...res, message }`): the call's signal and
// its response headers and trailers are own enumerable properties, as in
// Connect's plain objects, but read from the call only when first read. The
// getter functions are shared: an object literal's getter would be a new
// closure each time, and give every object a hidden class of its own (about
// 0.7 µs each, and garbage for the old generation).
const kCall = Symbol("call");
type WithCall = { [kCall]: UnaryHandlerCall };

/** An own, enumerable property read by `get`; assigning replaces it with the value, as on a plain object. */
function lazyProperty(name: string, get: (this: WithCall) => unknown): PropertyDescriptor {
  return {
    get,
    set(this: object, value: unknown) {
      Object.defineProperty(this, name, { value, writable: true, enumerable: true, configurable: true });
    },
    enumerable: true,
    configurable: true,
  };
}

const SIGNAL = lazyProperty("signal", function (this: WithCall) {
  return this[kCall].signal;
});
const RESPONSE_HEADER = lazyProperty("header", function (this: WithCall) {
  return this[kCall].responseHeader;
});
const RESPONSE_TRAILER = lazyProperty("trailer", function (this: WithCall) {
  return this[kCall].responseTrailer;
});

/** What Connect's requests and responses share (its requestCommon and responseCommon): the method, and the call behind them. */
abstract class CallMessage {
  readonly stream = false;
  readonly method: UnaryRequest["method"];
  readonly service: UnaryRequest["service"];

  constructor(
    call: UnaryHandlerCall,
    readonly message: Message,
  ) {
    this.method = call.spec.method;
    this.service = call.spec.method.parent;
    (this as unknown as WithCall)[kCall] = call;
  }
}

/** The UnaryRequest the interceptors get, with the signal read lazily. */
class CallRequest extends CallMessage {
  readonly requestMethod = "POST";
  readonly url: string;
  readonly header: Headers;
  readonly contextValues: ContextValues;
  declare readonly signal: AbortSignal;

  constructor(call: UnaryHandlerCall, message: Message) {
    super(call, message);
    this.url = call.url;
    this.header = call.requestHeader;
    this.contextValues = call.values;
    Object.defineProperty(this, "signal", SIGNAL);
  }
}

/** The implementation's UnaryResponse, with the call's headers and trailers read lazily. */
class CallResponse extends CallMessage {
  declare readonly header: Headers;
  declare readonly trailer: Headers;

  constructor(call: UnaryHandlerCall, message: Message) {
    super(call, message);
    Object.defineProperty(this, "header", RESPONSE_HEADER);
    Object.defineProperty(this, "trailer", RESPONSE_TRAILER);
  }
}

/**
 * The context the implementation gets: Connect's mergeRequest, the call's
 * context with what the request that reached the implementation says. The
 * signal and the response headers and trailers are read when asked for, by
 * getters on the prototype (`{ ...ctx }` would not copy them; no handler of
 * ours copies its context).
 */
class CallContext implements HandlerContext {
  readonly method: HandlerContext["method"];
  readonly service: HandlerContext["service"];
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  readonly url: string;
  readonly timeoutMs: () => number | undefined;
  readonly requestHeader: Headers;
  readonly values: ContextValues;

  constructor(
    private readonly call: UnaryHandlerCall,
    private readonly req: UnaryRequest,
  ) {
    this.method = req.method;
    this.service = req.service;
    this.url = req.url;
    this.timeoutMs = call.timeoutMs;
    this.requestHeader = req.header;
    this.values = req.contextValues;
  }

  get signal(): AbortSignal {
    return this.req.signal;
  }

  get responseHeader(): Headers {
    return this.call.responseHeader;
  }

  get responseTrailer(): Headers {
    return this.call.responseTrailer;
  }
}

function noDeadline(): undefined {
  return undefined;
}

// Connect's copyHeaders: `to` becomes a copy of `from` (unless they are the same object).
function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  to.forEach((_, key) => to.delete(key));
  from.forEach((value, key) => to.set(key, value));
}

// As connect-node writes Headers to node:http2: lowercase names, several values joined.
function fromHeaders(headers: Headers): Record<string, string> {
  const entries: Record<string, string> = {};
  headers.forEach((value, name) => {
    entries[name] = value;
  });
  return entries;
}
