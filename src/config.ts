/**
 * The service's configuration: read from the environment once, at startup,
 * validated, and passed down explicitly. Nothing else reads `process.env`.
 * README.md documents every variable.
 */
export interface Config {
  /** Interface to listen on. */
  host: string;
  /** Port serving gRPC, gRPC-Web and Connect (h2c). */
  port: number;
  /** Port of the browser dashboard (HTTP/1.1, or HTTPS with TLS); undefined: no dashboard. */
  dashboardPort: number | undefined;
  /** PostgreSQL connection string; when unset the embedded PGlite is used. */
  databaseUrl: string | undefined;
  /** Directory of the embedded PGlite database (when `databaseUrl` is unset). */
  dataDir: string;
  /** Maximum connections of the PostgreSQL pool. */
  databasePoolMax: number;
  /** Longest wait between two attempts to migrate an unreachable database (ms; the wait doubles up to it). */
  databaseRetryMaxMs: number;
  /** Time between two probes (`SELECT 1`) of the database once it is migrated (ms). */
  databaseProbeIntervalMs: number;
  /** After SIGTERM/SIGINT, how long health says NOT_SERVING while calls are still taken (ms). */
  shutdownDrainDelayMs: number;
  /** After the drain delay, how long in-flight unary calls get to finish (ms). */
  shutdownGraceMs: number;
  /** Rows read per keyset batch by streaming RPCs. */
  streamBatchSize: number;
  /** Rows deleted per statement by the Delete* RPCs. */
  deleteBatchSize: number;
  /** Minimum level of log lines written to stdout. */
  logLevel: LogLevel;
  /** Largest request message accepted (bytes, after decompression); larger ones answer RESOURCE_EXHAUSTED. */
  maxRequestBytes: number;
  /** JSON file of API keys (src/auth/key-store.ts); with AUTH_KEYS unset too, development mode. */
  authKeysFile: string | undefined;
  /** The same JSON as AUTH_KEYS_FILE, inline (a secret: never logged). */
  authKeys: string | undefined;
  /** With keys configured, whether grpc.health.v1.Health answers without a key. */
  authPublicHealth: boolean;
  /** With keys configured, whether server reflection answers without a key. */
  authPublicReflection: boolean;
  /** PEM certificate chain; with `tlsKeyFile`, serve TLS (h2 and HTTP/1.1) instead of h2c. */
  tlsCertFile: string | undefined;
  /** PEM private key of `tlsCertFile`. */
  tlsKeyFile: string | undefined;
}

/** Severity of a log line, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const logLevels: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** Defaults of every setting; `loadConfig` overrides them from the environment. */
export const defaultConfig: Config = {
  host: "0.0.0.0",
  port: 50051,
  dashboardPort: undefined,
  databaseUrl: undefined,
  dataDir: "./data",
  databasePoolMax: 10,
  databaseRetryMaxMs: 30_000,
  databaseProbeIntervalMs: 5_000,
  shutdownDrainDelayMs: 0,
  shutdownGraceMs: 10_000,
  // Rows of a batch wait in memory while they are sent: 100 kept StreamIncompleteWorkflows'
  // peak RSS about 30 MB lower than 500 over 1,000,000 rows, at the same rows/s (docs/performance.md).
  streamBatchSize: 100,
  deleteBatchSize: 1_000,
  logLevel: "info",
  maxRequestBytes: 4 * 1024 * 1024,
  authKeysFile: undefined,
  authKeys: undefined,
  authPublicHealth: true,
  authPublicReflection: true,
  tlsCertFile: undefined,
  tlsKeyFile: undefined,
};

/**
 * Reads the configuration from environment variables. Throws an Error naming
 * the variable when one is malformed, so that a typo stops the server at
 * startup instead of being silently replaced by a default.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = int(env, "PORT", 0, 65_535) ?? defaultConfig.port;
  const dashboardPort = int(env, "DASHBOARD_PORT", 0, 65_535);
  if (dashboardPort !== undefined && dashboardPort !== 0 && dashboardPort === port) {
    throw new Error(`DASHBOARD_PORT must differ from PORT (both are ${port})`);
  }
  return {
    host: str(env, "HOST") ?? defaultConfig.host,
    port,
    dashboardPort,
    databaseUrl: str(env, "DATABASE_URL"),
    dataDir: str(env, "DATA_DIR") ?? defaultConfig.dataDir,
    databasePoolMax: int(env, "DATABASE_POOL_MAX", 1, 1_000) ?? defaultConfig.databasePoolMax,
    databaseRetryMaxMs: int(env, "DATABASE_RETRY_MAX_MS", 1, 600_000) ?? defaultConfig.databaseRetryMaxMs,
    databaseProbeIntervalMs: int(env, "DATABASE_PROBE_INTERVAL_MS", 100, 600_000) ?? defaultConfig.databaseProbeIntervalMs,
    shutdownDrainDelayMs: int(env, "SHUTDOWN_DRAIN_DELAY_MS", 0, 600_000) ?? defaultConfig.shutdownDrainDelayMs,
    shutdownGraceMs: int(env, "SHUTDOWN_GRACE_MS", 0, 600_000) ?? defaultConfig.shutdownGraceMs,
    streamBatchSize: int(env, "STREAM_BATCH_SIZE", 1, 10_000) ?? defaultConfig.streamBatchSize,
    deleteBatchSize: int(env, "DELETE_BATCH_SIZE", 1, 100_000) ?? defaultConfig.deleteBatchSize,
    logLevel: level(env, "LOG_LEVEL") ?? defaultConfig.logLevel,
    maxRequestBytes: int(env, "MAX_REQUEST_BYTES", 1_024, 1_073_741_824) ?? defaultConfig.maxRequestBytes,
    authKeysFile: str(env, "AUTH_KEYS_FILE"),
    authKeys: str(env, "AUTH_KEYS"),
    authPublicHealth: bool(env, "AUTH_PUBLIC_HEALTH") ?? defaultConfig.authPublicHealth,
    authPublicReflection: bool(env, "AUTH_PUBLIC_REFLECTION") ?? defaultConfig.authPublicReflection,
    tlsCertFile: str(env, "TLS_CERT_FILE"),
    tlsKeyFile: str(env, "TLS_KEY_FILE"),
  };
}

function str(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === "" ? undefined : value;
}

function int(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

function level(env: NodeJS.ProcessEnv, name: string): LogLevel | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  if (!(logLevels as readonly string[]).includes(raw)) {
    throw new Error(`${name} must be one of ${logLevels.join(", ")}, got "${raw}"`);
  }
  return raw as LogLevel;
}

function bool(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  if (raw !== "true" && raw !== "false") throw new Error(`${name} must be true or false, got "${raw}"`);
  return raw === "true";
}
