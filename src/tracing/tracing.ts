import { type Context, type Span, SpanKind, SpanStatusCode, type TextMapGetter, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as OTLPJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OTLPProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Knex } from "knex";
import type { TracingConfig } from "../config.js";
import { setLogContextFields } from "../logging/logger.js";

// OpenTelemetry tracing, on only when the OTEL_* variables ask for it
// (src/config.ts): then every RPC gets a SERVER span that continues the
// caller's W3C `traceparent` (a gRPC metadata entry and an HTTP header are the
// same HTTP/2 header), every SQL statement run during it a CLIENT child span,
// and every log line written during it the trace and span ids. Spans are
// batched and exported with OTLP over HTTP (protobuf or JSON).
//
// Off, none of this exists: no interceptor is installed, no Knex listener, no
// log hook, and src/main.ts does not even load this module (nor, through it,
// OpenTelemetry's SDK and exporters: about 25 MB of memory), so tracing off
// costs nothing (README "Tracing": the B0 benchmark).
//
// Nothing is registered globally (no global tracer provider or context
// manager): a server's tracing is its own, so tests can run several.

/** A server's tracing. */
export interface Tracing {
  /** The interceptor making the RPC spans; must be the outermost one. */
  readonly interceptor: Interceptor;
  /** Runs `work` in a root span of its own (background work such as a retention pass), SQL spans as its children. */
  inSpan<T>(name: string, work: () => Promise<T>): Promise<T>;
  /** Exports the spans still buffered and stops exporting. */
  shutdown(): Promise<void>;
}

// One AsyncLocalStorage for the process: the context of the call being run,
// which the SQL listeners and the log hook read. Made on first use.
let contextManager: AsyncLocalStorageContextManager | undefined;
function contexts(): AsyncLocalStorageContextManager {
  if (contextManager === undefined) {
    contextManager = new AsyncLocalStorageContextManager().enable();
    const manager = contextManager;
    // Log lines written while a span is active carry its ids.
    setLogContextFields(() => {
      const span = trace.getSpan(manager.active());
      if (span === undefined) return undefined;
      const { traceId, spanId } = span.spanContext();
      return { traceId, spanId };
    });
  }
  return contextManager;
}

const propagator = new W3CTraceContextPropagator();
const headerGetter: TextMapGetter<Headers> = {
  keys: (headers) => [...headers.keys()],
  get: (headers, key) => headers.get(key) ?? undefined,
};

// Codes that make a server span an error (OpenTelemetry's RPC conventions for
// gRPC servers): the server's fault, not the caller's.
const SERVER_ERRORS = new Set([Code.Unknown, Code.DeadlineExceeded, Code.Unimplemented, Code.Internal, Code.Unavailable, Code.DataLoss]);

/** Starts tracing with `config`; with `knex`, SQL statements run during a span become its children. */
export function startTracing(config: TracingConfig, knex?: Knex): Tracing {
  const manager = contexts();
  const exporter = config.protocol === "http/json" ? new OTLPJsonExporter({ url: config.url }) : new OTLPProtobufExporter({ url: config.url });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ ...config.resourceAttributes, "service.name": config.serviceName }),
    sampler: sampler(config),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  const tracer = provider.getTracer("orchestrator-state");
  const detachSql = knex === undefined ? () => {} : traceSql(knex, tracer, manager);

  const interceptor: Interceptor = (next) => async (req) => {
    const parent = propagator.extract(ROOT_CONTEXT, req.header, headerGetter);
    const service = req.method.parent.typeName;
    const span = tracer.startSpan(
      `${service}/${req.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "rpc.system": rpcSystem(req.header.get("content-type")),
          "rpc.service": service,
          "rpc.method": req.method.name,
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    let res;
    try {
      res = await manager.with(ctx, () => next(req));
    } catch (err) {
      endRpc(span, err);
      throw err;
    }
    if (!res.stream) {
      endRpc(span, undefined);
      return res;
    }
    return { ...res, message: inContext(res.message, ctx, manager, span) };
  };

  return {
    interceptor,
    inSpan: async (name, work) => {
      const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL }, ROOT_CONTEXT);
      try {
        return await manager.with(trace.setSpan(ROOT_CONTEXT, span), work);
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
        throw err;
      } finally {
        span.end();
      }
    },
    async shutdown() {
      detachSql();
      await provider.shutdown();
    },
  };
}

/** A response stream whose messages are produced in the call's context (SQL of later batches stays a child); ends the span. */
async function* inContext<T>(source: AsyncIterable<T>, ctx: Context, manager: AsyncLocalStorageContextManager, span: Span): AsyncIterable<T> {
  const iterator = source[Symbol.asyncIterator]();
  let failure: unknown;
  let ended = false;
  try {
    for (;;) {
      const step = await manager.with(ctx, () => iterator.next());
      if (step.done === true) break;
      yield step.value;
    }
    ended = true;
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    if (!ended && failure === undefined) {
      // The client went away: let the source clean up, in the call's context.
      await manager.with(ctx, async () => iterator.return?.()).catch(() => {});
      failure = new ConnectError("the client cancelled the stream", Code.Canceled);
    }
    endRpc(span, failure);
  }
}

function endRpc(span: Span, err: unknown): void {
  const code = err === undefined ? 0 : ConnectError.from(err).code;
  span.setAttribute("rpc.grpc.status_code", code);
  if (SERVER_ERRORS.has(code as Code)) span.setStatus({ code: SpanStatusCode.ERROR, message: ConnectError.from(err).rawMessage });
  span.end();
}

/** "grpc" for gRPC and gRPC-Web, "connect_rpc" for the Connect protocol (OpenTelemetry's rpc.system values). */
function rpcSystem(contentType: string | null): string {
  return contentType !== null && contentType.startsWith("application/grpc") ? "grpc" : "connect_rpc";
}

/** Knex's query event payload (the fields used here). */
interface QueryEvent {
  sql?: string;
  __knexQueryUid?: string;
}

/**
 * CLIENT spans for the SQL statements Knex runs while a span is active (both
 * backends: Knex's query events, not a driver's instrumentation). Statements
 * outside any span (probes, migrations) make none. Returns a function that
 * removes the listeners.
 */
function traceSql(knex: Knex, tracer: ReturnType<TracerProvider["getTracer"]>, manager: AsyncLocalStorageContextManager): () => void {
  const open = new Map<string, Span>();
  const system = (knex.client as { config?: { client?: unknown } }).config?.client === "pg" ? "postgresql" : "pglite";
  const onQuery = (q: QueryEvent) => {
    const parent = manager.active();
    if (q.__knexQueryUid === undefined || trace.getSpan(parent) === undefined) return;
    const text = q.sql ?? "";
    const operation = /^\s*(\w+)/.exec(text)?.[1]?.toUpperCase() ?? "SQL";
    open.set(
      q.__knexQueryUid,
      tracer.startSpan(
        operation,
        {
          kind: SpanKind.CLIENT,
          attributes: {
            "db.system.name": "postgresql",
            "db.client": system,
            "db.operation.name": operation,
            // Values travel as bind parameters: the text holds none.
            "db.query.text": text.length > 2_000 ? `${text.slice(0, 2_000)}…` : text,
          },
        },
        parent,
      ),
    );
  };
  const end = (q: QueryEvent | undefined, err?: unknown) => {
    const uid = q?.__knexQueryUid;
    const span = uid === undefined ? undefined : open.get(uid);
    if (span === undefined) return;
    open.delete(uid!);
    if (err !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    span.end();
  };
  const onResponse = (_response: unknown, q: QueryEvent) => end(q);
  const onError = (err: unknown, q: QueryEvent) => end(q, err);
  knex.on("query", onQuery);
  knex.on("query-response", onResponse);
  knex.on("query-error", onError);
  return () => {
    knex.off("query", onQuery);
    knex.off("query-response", onResponse);
    knex.off("query-error", onError);
  };
}

function sampler(config: TracingConfig): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(config.samplerRatio);
  switch (config.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratio();
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratio() });
  }
}
