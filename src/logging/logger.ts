import type { LogLevel } from "../config.js";

/** Structured fields of one log line. */
export type LogFields = Record<string, unknown>;

/** Writes one JSON object per line; the format log shippers expect. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * Creates a logger writing JSON lines (`{"time","level","msg",...fields}`) to
 * `write` (stdout by default). Lines below `minLevel` are dropped.
 */
export function createLogger(
  minLevel: LogLevel = "info",
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const log = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (rank[level] < rank[minLevel]) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }, errorReplacer)}\n`);
  };
  return {
    debug: (msg, fields) => log("debug", msg, fields),
    info: (msg, fields) => log("info", msg, fields),
    warn: (msg, fields) => log("warn", msg, fields),
    error: (msg, fields) => log("error", msg, fields),
  };
}

/** A logger that drops everything; for tests that do not look at logs. */
export const silentLogger: Logger = createLogger("error", () => {});

// Errors have no enumerable properties; log their name, message, code and stack.
function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const { name, message, stack } = value;
    const code = (value as { code?: unknown }).code;
    return { name, message, code, stack };
  }
  return value;
}
