// How the process ends when it cannot start: one JSON line naming the cause
// (and the variable at fault), and an exit code a supervisor can act on
// (README "Exit codes"). Also the checks main.ts runs before the database is
// opened, so that a port in use is reported at once, not after migrations.
import * as net from "node:net";
import { ConfigError } from "../config.js";
import { DataDirLockedError, DataDirUnwritableError } from "../db/data-dir-lock.js";
import type { Logger } from "../logging/logger.js";

/** Exit codes of the server and of `npm run migrate` (README "Exit codes"). */
export const EXIT = {
  /** Stopped by SIGTERM or SIGINT after a clean shutdown; the migrations applied (`npm run migrate`). */
  OK: 0,
  /** An unexpected error: a bug, or a database that failed in a way we do not know; the line has the stack. */
  FAILURE: 1,
  /** A configuration that cannot work: a variable, DATA_DIR, a port in use, a database that refused us. Restarting will not help. */
  CONFIGURATION: 2,
  /** DATA_DIR is held by another live process. */
  DATA_DIR_LOCKED: 3,
  /** `npm run migrate` only: the database did not answer. */
  DATABASE_UNREACHABLE: 4,
} as const;

/**
 * Logs why the process cannot start, as one JSON line, and exits. What is
 * known to be the operator's to fix is logged without a stack; anything else
 * with it (it is a bug).
 */
export function exitOnStartupError(logger: Logger, err: unknown): never {
  if (err instanceof ConfigError) {
    logger.error(`cannot start: ${err.message}`, { variable: err.variable, exitCode: EXIT.CONFIGURATION });
    process.exit(EXIT.CONFIGURATION);
  }
  if (err instanceof DataDirLockedError) {
    logger.error(`cannot start: ${err.message}`, { variable: "DATA_DIR", dataDir: err.dataDir, pid: err.pid, exitCode: EXIT.DATA_DIR_LOCKED });
    process.exit(EXIT.DATA_DIR_LOCKED);
  }
  if (err instanceof DataDirUnwritableError) {
    logger.error(`cannot start: ${err.message}`, { variable: "DATA_DIR", dataDir: err.dataDir, exitCode: EXIT.CONFIGURATION });
    process.exit(EXIT.CONFIGURATION);
  }
  logger.error("cannot start: unexpected error", { error: err, exitCode: EXIT.FAILURE });
  process.exit(EXIT.FAILURE);
}

/**
 * An Error thrown while reading a setting outside config.ts (the keys of
 * src/auth/, the TLS files), whose message starts with the variable's name,
 * as a ConfigError naming it; anything else unchanged.
 */
export function asConfigError(err: unknown, env: NodeJS.ProcessEnv = process.env): unknown {
  if (!(err instanceof Error) || err instanceof ConfigError) return err;
  const variable = /^([A-Z][A-Z0-9_]*[A-Z0-9])\b/.exec(err.message)?.[1];
  return variable !== undefined && env[variable] !== undefined ? new ConfigError(variable, err.message) : err;
}

/** A port the server is about to listen on, with the variable that set it. */
export interface PortSetting {
  variable: string;
  port: number;
}

/**
 * Binds and releases each port on `host`, so that one in use (or not ours to
 * take) stops the process before the database is opened, naming its variable.
 * Port 0 (any free port) is skipped.
 */
export async function assertPortsFree(host: string, ports: readonly PortSetting[]): Promise<void> {
  for (const { variable, port } of ports) {
    if (port === 0) continue;
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once("error", (err) => reject(listenError(err, variable, host, port)));
      probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
    });
  }
}

/** A listen error as the ConfigError naming its variable, when it is the configuration's fault. */
export function listenError(err: unknown, variable: string, host: string, port: number): unknown {
  switch ((err as NodeJS.ErrnoException).code) {
    case "EADDRINUSE":
      return new ConfigError(variable, `${variable}: port ${port} on ${host} is in use by another process`);
    case "EACCES":
      return new ConfigError(variable, `${variable}: port ${port} on ${host} needs privileges this process lacks`);
    case "EADDRNOTAVAIL":
      return new ConfigError("HOST", `HOST: ${host} is not an address of this machine`);
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new ConfigError("HOST", `HOST: ${host} does not resolve to an address`);
    default:
      return err;
  }
}
