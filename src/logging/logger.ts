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
 * `write` (stdout by default, see writeStdout). Lines below `minLevel` are dropped.
 */
export function createLogger(minLevel: LogLevel = "info", write: (line: string) => void = writeStdout): Logger {
  const log = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (rank[level] < rank[minLevel]) return;
    const context = contextFields?.();
    const line = context === undefined ? { time: isoNow(), level, msg, ...fields } : { time: isoNow(), level, msg, ...context, ...fields };
    // The replacer (for Errors) takes V8 off its fast JSON path; a line of
    // plain values (every per-RPC line) does not need it.
    write(`${hasObjects(fields) ? JSON.stringify(line, errorReplacer) : JSON.stringify(line)}\n`);
  };
  return {
    debug: (msg, fields) => log("debug", msg, fields),
    info: (msg, fields) => log("info", msg, fields),
    warn: (msg, fields) => log("warn", msg, fields),
    error: (msg, fields) => log("error", msg, fields),
  };
}

// Formatting the time was about a tenth of a log line's cost; every line of
// the same millisecond has the same text.
let isoMs = -1;
let isoText = "";
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

// Lines logged during one turn of the event loop reach stdout in one write, at
// the end of the turn: a write per line cost about as much as building the
// line (issue 6's no-op RPC benchmark). The "exit" handler writes what is
// pending however the process ends (process.exit, the signal handlers of
// main.ts, an uncaught exception); only an end without "exit" (SIGKILL, a
// signal nobody handles, a fatal V8 error) loses the lines of the last turn.
let pendingLines: string[] = [];
let flushScheduled = false;
function writeStdout(line: string): void {
  pendingLines.push(line);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flushStdout).unref();
}
function flushStdout(): void {
  flushScheduled = false;
  if (pendingLines.length === 0) return;
  const text = pendingLines.length === 1 ? pendingLines[0]! : pendingLines.join("");
  pendingLines = [];
  process.stdout.write(text);
}
process.on("exit", flushStdout);

// Fields of the context a line is logged in (the trace and span ids of the
// call, src/tracing/): unset, and so free, unless tracing is on.
let contextFields: (() => LogFields | undefined) | undefined;

/** Makes every line logged from now on carry `provider()`'s fields, when it returns some (src/tracing/ does). */
export function setLogContextFields(provider: () => LogFields | undefined): void {
  contextFields = provider;
}

/** A logger that drops everything; for tests that do not look at logs. */
export const silentLogger: Logger = createLogger("error", () => {});

function hasObjects(fields: LogFields | undefined): boolean {
  for (const key in fields) {
    const value = fields[key];
    if (typeof value === "object" && value !== null) return true;
  }
  return false;
}

// Errors have no enumerable properties; log their name, message, code and stack.
function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const { name, message, stack } = value;
    const code = (value as { code?: unknown }).code;
    return { name, message, code, stack };
  }
  return value;
}
