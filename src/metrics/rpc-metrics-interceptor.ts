import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Metrics } from "./metrics.js";

// go-grpc-prometheus's server series, counted by an interceptor: Connect's
// handlers (gRPC, gRPC-Web, Connect, streams) and the gRPC unary fast path
// (src/server/grpc-fast-path/) run the same per-service interceptors,
// so every call that reaches a handler is counted once, whatever its
// protocol. Calls refused before the interceptors (an unknown path, a body
// that cannot be decoded, a request past MAX_REQUEST_BYTES) are not, as in
// grpc-go, where they never reach a handler either.

/** The children of one method's series, made once (prom-client's label lookup costs more than the increment). */
interface MethodSeries {
  started: { inc(): void };
  received: { inc(): void };
  sent: { inc(): void };
  seconds: { observe(value: number): void };
  /** handled_total by code, indexed by Code (0 = OK). */
  handled: { inc(): void }[];
}

// Code numbers 0-16 and the names grpc-go gives them (Code.String()), which
// Connect's enum keys spell the same way.
const CODES = Array.from({ length: 17 }, (_, code) => (code === 0 ? "OK" : Code[code]!));

/**
 * The interceptor counting every call of `services`. Every series of every
 * method of `services` exists from the start, at zero (as grpc-go's
 * InitializeMetrics does), so that rate() and absence checks work before the
 * first call. Must be the outermost interceptor: it sees the final code.
 */
export function createRpcMetricsInterceptor(metrics: Metrics, services: readonly DescService[]): Interceptor {
  const byMethod = new Map<DescMethod, MethodSeries>();
  for (const service of services) {
    for (const method of service.methods) byMethod.set(method, seriesOf(metrics, method));
  }
  return (next) => async (req) => {
    const series = byMethod.get(req.method) ?? seriesOf(metrics, req.method);
    const start = performance.now();
    const end = (code: Code | 0) => {
      series.handled[code]!.inc();
      series.seconds.observe((performance.now() - start) / 1000);
    };
    series.started.inc();
    if (req.stream) {
      req = { ...req, message: counted(req.message, series.received) };
    } else {
      series.received.inc();
    }
    let res;
    try {
      res = await next(req);
    } catch (err) {
      end(ConnectError.from(err).code);
      throw err;
    }
    if (!res.stream) {
      series.sent.inc();
      end(0);
      return res;
    }
    const source = res.message;
    const signal = req.signal;
    async function* sending() {
      let code: Code | 0 | undefined;
      try {
        for await (const message of source) {
          series.sent.inc();
          yield message;
        }
        code = 0;
      } catch (err) {
        // A client that resets the stream surfaces as a raw socket error; the
        // call's signal says what happened (cancel, deadline, shutdown).
        code = ConnectError.from(signal.aborted && !(err instanceof ConnectError) ? (signal.reason ?? err) : err).code;
        throw err;
      } finally {
        // Ended neither normally nor with an error: the client went away.
        end(code ?? (signal.aborted ? ConnectError.from(signal.reason).code : Code.Canceled));
      }
    }
    return { ...res, message: sending() };
  };
}

/** Counts the messages of a request stream as they are read. */
async function* counted<T>(source: AsyncIterable<T>, received: { inc(): void }): AsyncIterable<T> {
  for await (const message of source) {
    received.inc();
    yield message;
  }
}

function seriesOf(metrics: Metrics, method: DescMethod): MethodSeries {
  const labels = { grpc_type: grpcType(method), grpc_service: method.parent.typeName, grpc_method: method.name };
  const handled = CODES.map((grpc_code) => metrics.rpcHandled.labels({ ...labels, grpc_code }));
  // Zero-valued series from the start (labels() alone creates none).
  for (const child of handled) child.inc(0);
  const started = metrics.rpcStarted.labels(labels);
  const received = metrics.rpcMsgReceived.labels(labels);
  const sent = metrics.rpcMsgSent.labels(labels);
  for (const child of [started, received, sent]) child.inc(0);
  metrics.rpcHandlingSeconds.zero(labels);
  return { started, received, sent, seconds: metrics.rpcHandlingSeconds.labels(labels), handled };
}

/** go-grpc-prometheus's grpc_type label. */
function grpcType(method: DescMethod): string {
  switch (method.methodKind) {
    case "unary":
      return "unary";
    case "server_streaming":
      return "server_stream";
    case "client_streaming":
      return "client_stream";
    case "bidi_streaming":
      return "bidi_stream";
  }
}
