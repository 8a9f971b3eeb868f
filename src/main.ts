// Entry point: config -> checks -> database -> migrations -> server -> signals.
// The only file that listens or reads process-wide state. Every line it
// writes is JSON, fatal ones included; README "Operations" tells what each
// step logs and the exit codes.
import * as fs from "node:fs";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { KeyStore } from "./auth/key-store.js";
import { type Config, loadConfig } from "./config.js";
import { type DataDirLock, lockDataDir } from "./db/data-dir-lock.js";
import { asConfigError, assertPortsFree, EXIT, exitOnStartupError, listenError } from "./lifecycle/startup.js";
import { createLogger, type Logger } from "./logging/logger.js";
import type { AppServer } from "./server/server.js";
import { loadTls } from "./server/tls.js";

// Only what the checks need is imported above: the server, the database
// drivers and the rest load after them (below), so that a configuration
// error is reported in milliseconds, not after the whole server has loaded.
const startedAt = performance.now();
const sinceStart = () => Math.round(performance.now() - startedAt);

// Until the configuration says otherwise, errors are logged at "info" and up.
let logger: Logger = createLogger("info");
process.on("uncaughtException", (err) => {
  logger.error("fatal: uncaught exception", { error: err, exitCode: EXIT.FAILURE });
  process.exit(EXIT.FAILURE);
});
process.on("unhandledRejection", (reason) => {
  logger.error("fatal: unhandled promise rejection", { error: reason, exitCode: EXIT.FAILURE });
  process.exit(EXIT.FAILURE);
});

// Node's own warnings (deprecations, listener leaks) as log lines too: its
// default printer writes free text to stderr.
process.removeAllListeners("warning");
process.on("warning", (warning) => {
  logger.warn(`node warning: ${warning.message}`, { warning: warning.name, code: (warning as { code?: unknown }).code });
});

// A signal during startup is acted on once startup is over (an embedded
// database is never left half migrated); afterwards it stops the server.
let stop: ((signal: string) => Promise<void>) | undefined;
let pendingSignal: string | undefined;
const onSignal = (signal: string) => {
  if (stop !== undefined) void stop(signal);
  else if (pendingSignal === undefined) {
    pendingSignal = signal;
    logger.info("signal received during startup: stopping once started", { signal });
  }
};
process.on("SIGTERM", () => onSignal("SIGTERM"));
process.on("SIGINT", () => onSignal("SIGINT"));

try {
  await main();
} catch (err) {
  exitOnStartupError(logger, err);
}

async function main(): Promise<void> {
  const config = loadConfig();
  logger = createLogger(config.logLevel);
  logger.info("starting orchestrator-state", { pid: process.pid, node: process.version });

  // Checked before the database is opened: keys or TLS files that cannot
  // work, a port in use or a DATA_DIR in use stop the process now.
  try {
    KeyStore.load(config);
    loadTls(config);
  } catch (err) {
    throw asConfigError(err);
  }
  await assertPortsFree(config.host, [
    { variable: "PORT", port: config.port },
    ...(config.metricsPort === undefined ? [] : [{ variable: "METRICS_PORT", port: config.metricsPort }]),
    ...(config.dashboardPort === undefined ? [] : [{ variable: "DASHBOARD_PORT", port: config.dashboardPort }]),
  ]);
  const lock = openDataDir(config);

  const loading = performance.now();
  const [{ DatabaseAvailability }, { createDatabase, migrate }, { permanentDatabaseError, withoutStack }, { createMetrics }, { startOperationsServer }, { createServer }, tracingModule] =
    await Promise.all([
      import("./db/availability.js"),
      import("./db/database.js"),
      import("./db/startup-errors.js"),
      import("./metrics/metrics.js"),
      import("./operations/operations-server.js"),
      import("./server/server.js"),
      // OpenTelemetry's SDK and exporters only when tracing is on: loaded, they
      // take about 25 MB of memory that a server without tracing never uses.
      config.tracing === undefined ? undefined : import("./tracing/tracing.js"),
    ]);
  logger.debug("modules loaded", { durationMs: Math.round(performance.now() - loading) });
  const knex = createDatabase({
    databaseUrl: config.databaseUrl,
    databaseDirectUrl: config.databaseDirectUrl,
    preparedStatements: config.databasePreparedStatements, pipelinedUnits: config.databasePipelinedUnits,
    dataDir: config.dataDir,
    poolMax: config.databasePoolMax,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    logger,
  });
  const backend = config.databaseUrl === undefined ? `embedded PGlite in ${config.dataDir}` : "PostgreSQL";

  // Metrics and HTTP health only with METRICS_PORT (README "Metrics"); the
  // operations port answers /readyz 503 until the server below is SERVING.
  const metrics = config.metricsPort === undefined ? undefined : createMetrics({ maxAgentSeries: config.metricsMaxAgentSeries });
  // Tracing only when the OTEL_* variables ask for it (README "Tracing").
  const tracing = config.tracing === undefined ? undefined : tracingModule!.startTracing(config.tracing, knex);
  if (config.tracing !== undefined) logger.info("exporting traces with OTLP", { url: config.tracing.url, protocol: config.tracing.protocol });

  // The server starts even when the database cannot be migrated: it then keeps
  // retrying in the background, health says NOT_SERVING and calls answer
  // UNAVAILABLE until it succeeds (src/db/availability.ts). A database that
  // refuses us (no such database or role, wrong password) stops the process.
  const database = new DatabaseAvailability({
    knex,
    logger,
    migrate: async () => {
      const began = performance.now();
      let applied: string[];
      try {
        applied = await migrate(knex);
      } catch (err) {
        const permanent = config.databaseUrl === undefined ? undefined : permanentDatabaseError(err);
        if (permanent !== undefined) {
          logger.error(`cannot start: DATABASE_URL: ${permanent}`, { variable: "DATABASE_URL", exitCode: EXIT.CONFIGURATION });
          process.exit(EXIT.CONFIGURATION);
        }
        // The embedded database has nothing to wait for: what failed once fails again.
        if (config.databaseUrl === undefined) {
          logger.error(`cannot start: the embedded database in DATA_DIR ${config.dataDir} could not be opened or migrated`, {
            variable: "DATA_DIR",
            error: err,
            exitCode: EXIT.FAILURE,
          });
          process.exit(EXIT.FAILURE);
        }
        throw withoutStack(err);
      }
      const durationMs = Math.round(performance.now() - began);
      if (applied.length > 0) logger.info("migrations applied", { migrations: applied, durationMs });
      else logger.info("database schema is up to date: no migration to apply", { durationMs });
    },
    retryMaxMs: config.databaseRetryMaxMs,
    probeIntervalMs: config.databaseProbeIntervalMs,
  });

  let server: AppServer;
  try {
    server = createServer({ knex, logger, config, database, metrics, tracing });
  } catch (err) {
    throw asConfigError(err);
  }
  await database.start();

  const operations =
    metrics === undefined
      ? undefined
      : await startOperationsServer({ port: config.metricsPort!, host: config.host, registry: metrics.registry, health: server.health, logger }).catch(
          (err: unknown) => Promise.reject(listenError(err, "METRICS_PORT", config.host, config.metricsPort!)),
        );
  if (operations !== undefined) logger.info("serving /metrics, /livez and /readyz over HTTP/1.1", { host: config.host, port: operations.port });
  const port = await server.listen(config.port, config.host).catch((err: unknown) => Promise.reject(listenError(err, "PORT", config.host, config.port)));
  const transport = config.tlsCertFile === undefined ? "h2c" : "TLS (h2, and HTTP/1.1 for Connect and gRPC-Web)";
  const address = `${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  logger.info(`serving gRPC, gRPC-Web and Connect over ${transport}`, { host: config.host, port, address, backend, startupMs: sinceStart() });
  if (config.dashboardPort !== undefined) {
    const dashboardPort = await server
      .listenDashboard(config.dashboardPort, config.host)
      .catch((err: unknown) => Promise.reject(asConfigError(listenError(err, "DASHBOARD_PORT", config.host, config.dashboardPort!))));
    const scheme = config.tlsCertFile === undefined ? "http" : "https";
    logger.info("serving the dashboard over HTTP/1.1", { host: config.host, port: dashboardPort, url: `${scheme}://localhost:${dashboardPort}/` });
  }

  let stopping = false;
  stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("signal received", { signal });
    try {
      await server.shutdown();
      await operations?.close();
      await tracing?.shutdown(); // exports the spans still buffered
    } finally {
      await database.stop();
      await knex.destroy();
      lock?.release();
      logger.info("database closed; exiting");
    }
    process.exit(EXIT.OK);
  };
  if (pendingSignal !== undefined) void stop(pendingSignal);
}

/** Locks DATA_DIR for this process (embedded PGlite on disk only) and says what will be opened. */
function openDataDir(config: Config): DataDirLock | undefined {
  if (config.databaseUrl !== undefined) {
    const url = new URL(config.databaseUrl);
    logger.info("connecting to PostgreSQL", { host: url.hostname, port: url.port || "5432", database: url.pathname.slice(1), user: url.username });
    return undefined;
  }
  if (config.dataDir.startsWith("memory://")) {
    logger.info("opening PGlite in memory (nothing is kept after exit)", { dataDir: config.dataDir });
    return undefined;
  }
  const lock = lockDataDir(config.dataDir);
  // A new database is created by the first start: tens of seconds on a slow machine, said up front.
  const created = !fs.existsSync(path.join(path.dirname(lock.path), "PG_VERSION"));
  logger.info(`opening PGlite at ${path.dirname(lock.path)}`, {
    dataDir: config.dataDir,
    lock: lock.path,
    ...(created ? { note: "a new database: this first start creates it, which takes a while" } : {}),
  });
  return lock;
}
