import { setMaxListeners } from "node:events";
import type * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type Interceptor } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import type { Knex } from "knex";
import { CircuitBreakerService } from "../../gen/orchestration/state/v1/circuit_breaker_service_pb.js";
import { RetentionService } from "../../gen/orchestration/state/v1/retention_service_pb.js";
import { RoutingAuditService } from "../../gen/orchestration/state/v1/routing_audit_service_pb.js";
import { StatisticsService } from "../../gen/orchestration/state/v1/statistics_service_pb.js";
import { WorkflowStateService } from "../../gen/orchestration/state/v1/workflow_state_service_pb.js";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/health/v1/health_pb.js";
import { kPrincipal } from "../auth/auth-interceptor.js";
import { createServerAuth } from "../auth/server-auth.js";
import type { Config } from "../config.js";
import { createDashboardServer } from "../dashboard/dashboard-server.js";
import { defaultAssetsDir, loadStaticAssets } from "../dashboard/static-assets.js";
import type { DatabaseAvailability } from "../db/availability.js";
import { errorDetailFiles } from "../errors/error-detail-files.js";
import { createErrorInterceptor } from "../errors/error-interceptor.js";
import { strictJsonOptions } from "../errors/request-decoding.js";
import { createHealthService, type HealthService } from "../health/health-service.js";
import { requestMaxBytes } from "../limits/request-size.js";
import { TenantLimiter } from "../limits/tenant-limiter.js";
import { createLoggingInterceptor } from "../logging/logging-interceptor.js";
import type { Logger } from "../logging/logger.js";
import { registerDatabaseMetrics } from "../metrics/database-metrics.js";
import type { Metrics } from "../metrics/metrics.js";
import { createRpcMetricsInterceptor } from "../metrics/rpc-metrics-interceptor.js";
import { createReflectionServices } from "../reflection/reflection-service.js";
import { RetentionWorker } from "../retention/worker.js";
import type { Tracing } from "../tracing/tracing.js";
import { TransitionFeed } from "../services/circuit-breaker/transition-feed.js";
import { createCircuitBreakerService } from "../services/circuit-breaker-service.js";
import { createRetentionService } from "../services/retention-service.js";
import { createRoutingAuditService } from "../services/routing-audit-service.js";
import { createStatisticsService } from "../services/statistics-service.js";
import { createWorkflowStateService } from "../services/workflow-state-service.js";
import { createExecutionEncoding } from "../services/workflow-state/encoding/index.js";
import { kHttp2Stream, StreamGuard } from "../streams/stream-guard.js";
import { StreamLimits } from "../streams/stream-limits.js";
import { createTenantInterceptor } from "../tenancy/tenant-interceptor.js";
import { kTenantScope } from "../tenancy/tenant-scope.js";
import { type Admission, keyAdmission, refusalInterceptor, tenantAdmission, withAdmission } from "./admission.js";
import { CallDrain } from "./drain.js";
import { installGrpcFastPath, withRequestDecodeErrors } from "./grpc-fast-path/index.js";
import { joinRepeatedAuthorization } from "./repeated-authorization.js";
import { registerOnRouter, serviceRegistration, type ServiceRegistration } from "./service-registration.js";
import { loadTls } from "./tls.js";

/** What the server is built from. */
export interface ServerDeps {
  knex: Knex;
  logger: Logger;
  /**
   * Whether the database is migrated and reachable (main.ts passes one): calls
   * answer UNAVAILABLE until it is migrated, and health is NOT_SERVING while it
   * is unavailable. Without it the database is assumed migrated (tests).
   */
  database?: DatabaseAvailability;
  /** Where the built dashboard is (default: dist/dashboard of this package). */
  dashboardAssetsDir?: string;
  /**
   * Where the RPC, database and domain series go (main.ts passes one when
   * METRICS_PORT is set; src/operations/ serves them). Without it no call is
   * counted.
   */
  metrics?: Metrics;
  /** OpenTelemetry tracing (main.ts starts it when the OTEL_* variables say so); without it no span is made. */
  tracing?: Tracing;
  config: Pick<
    Config,
    | "shutdownDrainDelayMs"
    | "shutdownGraceMs"
    | "streamBatchSize"
    | "deleteBatchSize"
    | "maxRequestBytes"
    | "pageMaxBytes"
    | "streamBatchMaxBytes"
    | "streamsMax"
    | "tenantStreamsMax"
    | "streamsBufferMaxBytes"
    | "tenantCallsMax"
    | "tenantQueueMax"
    | "authKeysFile"
    | "authKeys"
    | "authPublicHealth"
    | "authPublicReflection"
    | "tlsCertFile"
    | "tlsKeyFile"
    | "retentionDefaults"
    | "retentionIntervalMs"
    | "retentionBatchSize"
    | "databaseProbeIntervalMs"
    | "grpcFastPath"
  >;
}

/** A built server: listen, then shut down gracefully. */
export interface AppServer {
  /** Starts listening; resolves with the bound port (useful with port 0). */
  listen(port: number, host: string): Promise<number>;
  /**
   * Serves the dashboard (the page, and the same RPCs for it) over HTTP/1.1
   * on a port of its own, HTTPS when TLS is configured; resolves with the
   * bound port. Throws when the dashboard is not built.
   */
  listenDashboard(port: number, host: string): Promise<number>;
  /**
   * Graceful shutdown: health turns NOT_SERVING; after the drain delay new
   * calls answer UNAVAILABLE; in-flight unary calls get the grace period to
   * finish; open streams end with UNAVAILABLE; connections close. The
   * database is not closed here: its owner (main.ts) does that afterwards.
   */
  shutdown(): Promise<void>;
  /** The health service, to report status changes. */
  readonly health: HealthService;
  /**
   * Open HTTP/2 sessions and calls in flight of our services (lets tests see
   * that none leak), the gRPC unary calls the fast path has served, the
   * server streams open and the bytes they hold unsent (see StreamLimits),
   * and the tenants' turns taken and waited for (see TenantLimiter).
   */
  stats(): ServerStats;
  /** The background retention (RETENTION_INTERVAL); runOnce() runs a pass now. */
  readonly retention: RetentionWorker;
}

/** See AppServer.stats. */
export interface ServerStats {
  sessions: number;
  calls: number;
  grpcFastPathCalls: number;
  streams: number;
  streamBufferedBytes: number;
  turnsTaken: number;
  turnsWaiting: number;
}

/** How long shutdown lets open streams send their UNAVAILABLE trailers before it refuses the ones stuck behind unread messages. */
const SHUTDOWN_STREAM_FLUSH_MS = 1_000;

/** The services of our contract; each acts for exactly one tenant. */
export const tenantServices: readonly DescService[] = [
  WorkflowStateService,
  CircuitBreakerService,
  RoutingAuditService,
  StatisticsService,
  RetentionService,
];

/**
 * Builds the server: every protocol (gRPC, gRPC-Web, Connect) on one HTTP/2
 * cleartext port, our four services behind the tenancy interceptor, plus
 * health and reflection.
 */
export function createServer(deps: ServerDeps): AppServer {
  const { logger, config } = deps;
  const shutdownController = new AbortController();
  // Every call in flight listens on this signal: no listener limit applies.
  setMaxListeners(0, shutdownController.signal);
  const drain = new CallDrain();
  const health = createHealthService(tenantServices.map((s) => s.typeName));
  const reflection = createReflectionServices([...tenantServices, Health], errorDetailFiles);
  // Circuit breaker transitions from every replica, for WatchCircuitBreakers;
  // listens (one connection, probed every DATABASE_PROBE_INTERVAL_MS) from the
  // first watch until shutdown.
  const breakerFeed = new TransitionFeed(deps.knex, logger, config.databaseProbeIntervalMs);

  // Per-tenant fairness (TENANT_CALLS_MAX, TENANT_QUEUE_MAX): unary calls take
  // a turn before their body is read (admission.ts), streams one per batch.
  const turns = new TenantLimiter(config.tenantCallsMax, config.tenantQueueMax);
  const streams = new StreamLimits({
    streamsMax: config.streamsMax,
    tenantStreamsMax: config.tenantStreamsMax,
    bufferMaxBytes: config.streamsBufferMaxBytes,
    batchMaxBytes: config.streamBatchMaxBytes,
    batchMaxRows: config.streamBatchSize,
    turns,
  });
  const streamGuard = new StreamGuard();

  // Interceptors are given per service, because Connect replaces (does not
  // extend) the adapter's interceptors with a service's own. Order matters: the
  // first is the outermost. The stream guard ends streams on every path, so it
  // wraps everything; logging sees the final code; errors are translated
  // before logging sees them; a call admission refused is refused next, with
  // the same error the interceptors after it would give; the API key is
  // checked (src/auth/; none in development mode); the drain counts calls;
  // tenancy runs last, right before the handler, bound to the key's tenant.
  const auth = createServerAuth(config, logger);
  const tls = loadTls(config);
  const { metrics } = deps;
  if (metrics !== undefined) registerDatabaseMetrics(metrics, { knex: deps.knex, logger, database: deps.database });
  // The RPC span and series are outermost but for the stream guard, so that
  // they see the final code (and the span is active while everything inside
  // runs and logs).
  const tracing = deps.tracing === undefined ? [] : [deps.tracing.interceptor];
  const counting = metrics === undefined ? [] : [createRpcMetricsInterceptor(metrics, [...tenantServices, Health, ServerReflectionV1, ServerReflectionV1alpha])];
  const common: Interceptor[] = [
    streamGuard.interceptor,
    ...tracing,
    ...counting,
    createLoggingInterceptor(logger, (values) => ({ tenant: values.get(kTenantScope)?.tenantId, key: values.get(kPrincipal)?.keyId })),
    createErrorInterceptor(logger),
    refusalInterceptor,
  ];
  const databaseGate = deps.database === undefined ? [] : [deps.database.interceptor];
  const tenantCall = { interceptors: [...common, ...auth.tenantServices, drain.interceptor, ...databaseGate, createTenantInterceptor(deps.knex)] };
  deps.database?.onChange((available) => health.setDependency("database", available));
  const healthCall = { interceptors: [...common, ...auth.health] };
  const reflectionCall = { interceptors: [...common, ...auth.reflection] };
  const tenantAdmitted = tenantAdmission(auth.checks.tenantServices, turns);
  const pages = { pageMaxBytes: config.pageMaxBytes };
  // Each service with its implementation, interceptors and admission:
  // registered on Connect's router, and the same registrations serve the gRPC
  // unary fast path.
  const services: ServiceRegistration[] = [
    serviceRegistration(
      WorkflowStateService,
      createWorkflowStateService({ streams, ...pages, deleteBatchSize: config.deleteBatchSize }),
      // The executions' encoding step, outermost so that every interceptor sees real messages: src/services/workflow-state/encoding/.
      { interceptors: [createExecutionEncoding(logger), ...tenantCall.interceptors] },
      tenantAdmitted,
    ),
    serviceRegistration(
      RoutingAuditService,
      createRoutingAuditService({
        ...pages,
        deleteBatchSize: config.deleteBatchSize,
        onGroupCommitBatch: metrics === undefined ? undefined : (n) => metrics.routingDecisionBatchSize.observe(n),
        onTaskOutcome: metrics?.agentOutcome,
      }),
      tenantCall,
      tenantAdmitted,
    ),
    serviceRegistration(StatisticsService, createStatisticsService({ ...pages, onTaskOutcome: metrics?.agentOutcome }), tenantCall, tenantAdmitted),
    serviceRegistration(CircuitBreakerService, createCircuitBreakerService({ feed: breakerFeed, streams, ...pages }), tenantCall, tenantAdmitted),
    serviceRegistration(
      RetentionService,
      createRetentionService({ defaults: config.retentionDefaults, batchSize: config.retentionBatchSize, metrics }),
      tenantCall,
      tenantAdmitted,
    ),
    serviceRegistration(Health, health.impl, healthCall, keyAdmission(auth.checks.health)),
    serviceRegistration(ServerReflectionV1, reflection.v1, reflectionCall, keyAdmission(auth.checks.reflection)),
    serviceRegistration(ServerReflectionV1alpha, reflection.v1alpha, reflectionCall, keyAdmission(auth.checks.reflection)),
  ];
  // Every method with its own request limit (src/limits/request-size.ts).
  const readMaxBytesOf = (method: DescMethod) => requestMaxBytes(method, config.maxRequestBytes);
  const routes = registerOnRouter(services, readMaxBytesOf);
  const admissionOf = new Map<DescService, Admission>(services.map((r) => [r.service, r.admission]));

  // The options both paths share: the fast path must limit and negotiate exactly as Connect does.
  const handlerOptions = {
    shutdownSignal: shutdownController.signal,
    // connectNodeAdapter's default, spelled out for the fast path.
    acceptCompression: [compressionGzip, compressionBrotli],
  };
  const connectHandler = connectNodeAdapter({
    ...handlerOptions,
    // Larger request messages answer RESOURCE_EXHAUSTED before they are decoded (each method has its own limit, above).
    readMaxBytes: config.maxRequestBytes,
    routes: withAdmission(withRequestDecodeErrors(routes), (method) => admissionOf.get(method.parent)!),
    jsonOptions: strictJsonOptions,
    // The HTTP/2 stream of each call, for the stream guard (src/streams/stream-guard.ts).
    contextValues: (req) => createContextValues().set(kHttp2Stream, "stream" in req ? req.stream : undefined),
  });
  // Several authorization fields are several keys, whatever node:http2 and
  // node:http keep (src/server/repeated-authorization.ts); the fast path does the
  // same for the streams it takes.
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    joinRepeatedAuthorization(req.headers, req.rawHeaders);
    connectHandler(req, res);
  };
  // With a certificate: h2 over TLS, and HTTP/1.1 (ALPN) for the Connect and
  // gRPC-Web protocols; without: h2c.
  const server: http2.Http2Server | http2.Http2SecureServer =
    tls === undefined ? http2.createServer(handler) : http2.createSecureServer({ ...tls, allowHTTP1: true }, handler);
  // Unary gRPC calls skip Connect's streaming pipeline (src/server/grpc-fast-path/
  // says why); every other request still goes to `handler`. GRPC_FAST_PATH=false leaves all to Connect.
  const fastPath = config.grpcFastPath ? installGrpcFastPath(server, services, { ...handlerOptions, readMaxBytesOf }) : undefined;
  // HTTP/1.1 connections (TLS only) have no HTTP/2 session to close here:
  // server.close() closes the idle keep-alive ones itself (allowHTTP1).
  // The same holds for the dashboard's HTTP/1.1 server, when it listens.
  let dashboard: http.Server | undefined;
  const sessions = new Set<http2.ServerHttp2Session>();
  // Scheduled retention (src/retention/worker.ts), from listen to shutdown.
  const retention = new RetentionWorker({
    knex: deps.knex,
    logger,
    metrics,
    defaults: config.retentionDefaults,
    intervalMs: config.retentionIntervalMs,
    batchSize: config.retentionBatchSize,
    inSpan: deps.tracing?.inSpan,
  });
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });

  return {
    health,
    retention,
    stats: () => {
      const open = streams.stats();
      const tenantTurns = turns.totals();
      return {
        sessions: sessions.size,
        calls: drain.active,
        grpcFastPathCalls: fastPath?.served ?? 0,
        streams: open.streams,
        streamBufferedBytes: open.bufferedBytes,
        turnsTaken: tenantTurns.running,
        turnsWaiting: tenantTurns.waiting,
      };
    },
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          health.setAll(ServingStatus.SERVING);
          retention.start();
          const fields = { ...auth.logFields, tls: tls !== undefined };
          // Health follows the database too: not SERVING while it has not answered.
          const state = deps.database === undefined || deps.database.isAvailable ? "health is SERVING" : "health is NOT_SERVING until the database answers";
          if (auth.developmentMode) logger.warn(`${state} in DEVELOPMENT MODE: no API keys, any caller may act for any tenant`, fields);
          else logger.info(state, fields);
          resolve((server.address() as AddressInfo).port);
        });
      });
    },
    async listenDashboard(port, host) {
      const assets = loadStaticAssets(deps.dashboardAssetsDir ?? defaultAssetsDir(), auth.developmentMode ? "development" : "api-keys");
      const listening = createDashboardServer(handler, assets, tls);
      return new Promise((resolve, reject) => {
        listening.once("error", reject);
        listening.listen(port, host, () => {
          listening.off("error", reject);
          dashboard = listening;
          resolve((listening.address() as AddressInfo).port);
        });
      });
    },
    async shutdown() {
      health.setAll(ServingStatus.NOT_SERVING);
      logger.info("shutting down: health is NOT_SERVING", { drainDelayMs: config.shutdownDrainDelayMs });
      const retentionStopped = retention.stop(); // after its current batch
      // Load balancers and clients watching health move away during the delay.
      await sleep(config.shutdownDrainDelayMs);
      drain.stopAccepting();
      const closed = Promise.all(
        [server, dashboard].map((s) => (s === undefined ? undefined : new Promise<void>((resolve) => s.close(() => resolve())))),
      ).then(() => undefined); // no new connections
      // Streams (and health watches) end now with UNAVAILABLE, however slowly
      // their clients read (the stream guard ends a handler waiting for its
      // client at once); unary handlers ignore the signal and run to completion.
      shutdownController.abort(new ConnectError("the server is shutting down; call again on another replica", Code.Unavailable));
      for (const session of sessions) session.close(); // GOAWAY: no new streams, open ones finish
      const graceEnd = Date.now() + config.shutdownGraceMs;
      // A stream whose trailers wait behind messages its client does not read
      // is reset with REFUSED_STREAM (gRPC clients: UNAVAILABLE) rather than
      // cut when the grace period is over.
      const refused = await streamGuard.endAll(Math.min(SHUTDOWN_STREAM_FLUSH_MS, config.shutdownGraceMs));
      if (refused > 0) logger.info("refused the streams whose clients were not reading", { streams: refused });
      const finished = await drain.waitIdle(config.shutdownGraceMs);
      if (!finished) logger.warn("grace period over; cancelling the calls still running", { calls: drain.active });
      // A call counts as finished before its last frames (a stream's
      // UNAVAILABLE trailers) are flushed; the sessions, closed above, end on
      // their own once they are. Destroying them at once would turn that
      // UNAVAILABLE into a CANCEL on the client.
      // Keep-alive connections of the dashboard that went idle since close().
      dashboard?.closeIdleConnections();
      if (finished) await within(closed, graceEnd - Date.now());
      for (const session of sessions) session.destroy();
      dashboard?.closeAllConnections();
      await closed;
      await breakerFeed.close(); // its watch streams have ended above
      await retentionStopped;
      logger.info("server stopped");
    },
  };
}

/** Waits for `promise`, at most `ms`. */
async function within(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))]);
  clearTimeout(timer);
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
