// Entry point: config -> database -> migrations -> server -> signals.
// The only file that listens or reads process-wide state.
import { loadConfig } from "./config.js";
import { DatabaseAvailability } from "./db/availability.js";
import { createDatabase, migrate } from "./db/database.js";
import { createLogger } from "./logging/logger.js";
import { createMetrics } from "./metrics/metrics.js";
import { startOperationsServer } from "./operations/operations-server.js";
import { createServer } from "./server/server.js";
import { startTracing } from "./tracing/tracing.js";

const config = loadConfig();
const logger = createLogger(config.logLevel);
const knex = createDatabase({
  databaseUrl: config.databaseUrl,
  dataDir: config.dataDir,
  poolMax: config.databasePoolMax,
  logger,
});
const backend = config.databaseUrl === undefined ? `embedded PGlite in ${config.dataDir}` : "PostgreSQL";

// The server starts even when the database cannot be migrated: it then keeps
// retrying in the background, health says NOT_SERVING and calls answer
// UNAVAILABLE until it succeeds (src/db/availability.ts).
const database = new DatabaseAvailability({
  knex,
  logger,
  migrate: () => migrate(knex),
  retryMaxMs: config.databaseRetryMaxMs,
  probeIntervalMs: config.databaseProbeIntervalMs,
});
await database.start();

// Metrics and HTTP health only with METRICS_PORT (README "Metrics"); the
// operations port answers /readyz 503 until the server below is SERVING.
const metrics = config.metricsPort === undefined ? undefined : createMetrics({ maxAgentSeries: config.metricsMaxAgentSeries });
// Tracing only when the OTEL_* variables ask for it (README "Tracing").
const tracing = config.tracing === undefined ? undefined : startTracing(config.tracing, knex);
if (config.tracing !== undefined) logger.info("exporting traces with OTLP", { url: config.tracing.url, protocol: config.tracing.protocol });
const server = createServer({ knex, logger, config, database, metrics, tracing });
const operations =
  metrics === undefined
    ? undefined
    : await startOperationsServer({ port: config.metricsPort!, host: config.host, registry: metrics.registry, health: server.health, logger });
if (operations !== undefined) logger.info("serving /metrics, /livez and /readyz over HTTP/1.1", { host: config.host, port: operations.port });
const port = await server.listen(config.port, config.host);
const transport = config.tlsCertFile === undefined ? "h2c" : "TLS (h2, and HTTP/1.1 for Connect and gRPC-Web)";
logger.info(`serving gRPC, gRPC-Web and Connect over ${transport}`, { host: config.host, port, backend });
if (config.dashboardPort !== undefined) {
  const dashboardPort = await server.listenDashboard(config.dashboardPort, config.host);
  const scheme = config.tlsCertFile === undefined ? "http" : "https";
  logger.info("serving the dashboard over HTTP/1.1", { host: config.host, port: dashboardPort, url: `${scheme}://localhost:${dashboardPort}/` });
}

let stopping = false;
const stop = async (signal: string) => {
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
    logger.info("database closed; exiting");
  }
  process.exit(0);
};
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
