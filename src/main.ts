// Entry point: config -> database -> migrations -> server -> signals.
// The only file that listens or reads process-wide state.
import { loadConfig } from "./config.js";
import { createDatabase, migrate } from "./db/database.js";
import { createLogger } from "./logging/logger.js";
import { createServer } from "./server/server.js";

const config = loadConfig();
const logger = createLogger(config.logLevel);
const knex = createDatabase({
  databaseUrl: config.databaseUrl,
  dataDir: config.dataDir,
  poolMax: config.databasePoolMax,
  logger,
});
const backend = config.databaseUrl === undefined ? `embedded PGlite in ${config.dataDir}` : "PostgreSQL";

try {
  await migrate(knex);
} catch (err) {
  logger.error("could not migrate the database; exiting", { backend, error: err });
  await knex.destroy().catch(() => {});
  process.exit(1);
}

const server = createServer({ knex, logger, config });
const port = await server.listen(config.port, config.host);
logger.info("serving gRPC, gRPC-Web and Connect over h2c", { host: config.host, port, backend });

let stopping = false;
const stop = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info("signal received", { signal });
  try {
    await server.shutdown();
  } finally {
    await knex.destroy();
    logger.info("database closed; exiting");
  }
  process.exit(0);
};
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
