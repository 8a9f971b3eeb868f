// `npm run migrate`: applies pending migrations to the configured database
// (DATABASE_URL, or the embedded PGlite in DATA_DIR, locked like the server
// locks it) and exits, saying which it applied. JSON lines and the exit codes
// of the server (README "Exit codes"); an unreachable database is not retried.
import { performance } from "node:perf_hooks";
import { Code } from "@connectrpc/connect";
import { loadConfig } from "../config.js";
import { lockDataDir } from "../db/data-dir-lock.js";
import { createDatabase, migrate } from "../db/database.js";
import { permanentDatabaseError, withoutStack } from "../db/startup-errors.js";
import { databaseErrorToConnect } from "../errors/database-errors.js";
import { createLogger, type Logger } from "../logging/logger.js";
import { EXIT, exitOnStartupError } from "./startup.js";

let logger: Logger = createLogger("info");
try {
  const config = loadConfig();
  logger = createLogger(config.logLevel);
  const embedded = config.databaseUrl === undefined && !config.dataDir.startsWith("memory://");
  const lock = embedded ? lockDataDir(config.dataDir) : undefined;
  const target = config.databaseUrl === undefined ? { dataDir: config.dataDir } : { database: databaseName(config.databaseUrl) };
  logger.info("applying pending migrations", target);
  const knex = createDatabase({ databaseUrl: config.databaseUrl, databaseDirectUrl: config.databaseDirectUrl, dataDir: config.dataDir, poolMax: 1, logger });
  const began = performance.now();
  try {
    const applied = await migrate(knex);
    const durationMs = Math.round(performance.now() - began);
    if (applied.length > 0) logger.info("migrations applied", { migrations: applied, durationMs });
    else logger.info("database schema is up to date: no migration to apply", { durationMs });
  } catch (err) {
    const permanent = config.databaseUrl === undefined ? undefined : permanentDatabaseError(err);
    if (permanent !== undefined) {
      logger.error(`cannot migrate: DATABASE_URL: ${permanent}`, { variable: "DATABASE_URL", exitCode: EXIT.CONFIGURATION });
      process.exitCode = EXIT.CONFIGURATION;
    } else if (config.databaseUrl !== undefined && isUnreachable(err)) {
      logger.error("cannot migrate: the database did not answer; nothing was applied", { error: withoutStack(err), exitCode: EXIT.DATABASE_UNREACHABLE });
      process.exitCode = EXIT.DATABASE_UNREACHABLE;
    } else {
      logger.error("cannot migrate", { error: err, exitCode: EXIT.FAILURE });
      process.exitCode = EXIT.FAILURE;
    }
  } finally {
    await knex.destroy();
    lock?.release();
  }
} catch (err) {
  exitOnStartupError(logger, err);
}

function databaseName(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`;
}

function isUnreachable(err: unknown): boolean {
  return databaseErrorToConnect(err)?.code === Code.Unavailable;
}
