// Over 400 lines: one Config type, its defaults and one parse per variable, kept together so the README's table maps to one file.
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
  /** PostgreSQL itself, when `databaseUrl` goes through a transaction-mode pooler: for what needs a session (LISTEN, the retention lock, migrations). */
  databaseDirectUrl: string | undefined;
  /** Named statements per connection (the binding, hot statements); undefined: on unless `databaseDirectUrl` is set. */
  databasePreparedStatements: boolean | undefined;
  /** PostgreSQL: tenant units pipelined (one round trip per statement unit) rather than on public APIs only. */
  databasePipelinedUnits: boolean;
  /** Directory of the embedded PGlite database (when `databaseUrl` is unset). */
  dataDir: string;
  /** Maximum connections of the PostgreSQL pool. */
  databasePoolMax: number;
  /** Longest wait between two attempts to migrate an unreachable database (ms; the wait doubles up to it). */
  databaseRetryMaxMs: number;
  /** Time between two probes (`SELECT 1`) of the database once it is migrated (ms). */
  databaseProbeIntervalMs: number;
  /** PostgreSQL: longest a statement of a call may run; a connection silent 1 s longer is presumed dead (ms). */
  databaseStatementTimeoutMs: number;
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
  /** Bytes of rows one page of a List RPC holds at most (a page always holds at least one row). */
  pageMaxBytes: number;
  /** Bytes of rows one server stream holds unsent at most: a keyset batch stops there (at least one row). */
  streamBatchMaxBytes: number;
  /** Server streams of the four services open at once, server-wide; past it RESOURCE_EXHAUSTED. */
  streamsMax: number;
  /** Server streams of one tenant open at once; past it RESOURCE_EXHAUSTED. */
  tenantStreamsMax: number;
  /** Bytes all server streams together hold unsent at most; past it RESOURCE_EXHAUSTED. */
  streamsBufferMaxBytes: number;
  /** Calls of one tenant running at once; the next ones wait in the tenant's own queue. */
  tenantCallsMax: number;
  /** Calls of one tenant waiting for a turn at most; past it RESOURCE_EXHAUSTED. */
  tenantQueueMax: number;
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
  /** Whether unary gRPC calls take the fast path (src/server/grpc-fast-path/) or, false, Connect's own adapter like every other call. */
  grpcFastPath: boolean;
  /** Port of the HTTP/1.1 operations server (/metrics, /livez, /readyz); undefined: not served, no RPC metrics kept. */
  metricsPort: number | undefined;
  /** Most (tenant, agent) pairs with series of their own in the agent outcome counters; the rest are counted under "_other". */
  metricsMaxAgentSeries: number;
  /** OpenTelemetry tracing, from the standard OTEL_* variables; undefined: off (no span is made). */
  tracing: TracingConfig | undefined;
  /** The retention policy of tenants that saved none, and of every field a saved policy leaves unset. */
  retentionDefaults: RetentionDefaults;
  /** Time between two background retention passes (ms); 0: no background retention. */
  retentionIntervalMs: number;
  /** Rows deleted per statement by retention. */
  retentionBatchSize: number;
}

/** Max ages of the retention policy, in seconds; 0 keeps forever. */
export interface RetentionDefaults {
  completedExecutionMaxAge: number;
  failedExecutionMaxAge: number;
  cancelledExecutionMaxAge: number;
  routingDecisionMaxAge: number;
  closedCircuitBreakerMaxAge: number;
  circuitBreakerTransitionMaxAge: number;
}

/** Where and how spans are exported (OTLP over HTTP), from the OTEL_* variables of the OpenTelemetry specification. */
export interface TracingConfig {
  /** The URL spans are POSTed to: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces". */
  url: string;
  /** OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL. */
  protocol: "http/protobuf" | "http/json";
  /** OTEL_SERVICE_NAME (else service.name of OTEL_RESOURCE_ATTRIBUTES, else "orchestrator-state"). */
  serviceName: string;
  /** OTEL_RESOURCE_ATTRIBUTES: key=value pairs, comma-separated, values percent-decoded. */
  resourceAttributes: Record<string, string>;
  /** OTEL_TRACES_SAMPLER (default parentbased_always_on). */
  sampler: "always_on" | "always_off" | "traceidratio" | "parentbased_always_on" | "parentbased_always_off" | "parentbased_traceidratio";
  /** OTEL_TRACES_SAMPLER_ARG for the ratio samplers (0 to 1; default 1). */
  samplerRatio: number;
}

/**
 * A setting that cannot work: thrown by `loadConfig` (and by the checks of
 * main.ts that run before the database is opened), logged as one line naming
 * `variable`, and the process exits with EXIT_CONFIGURATION (README "Exit codes").
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    /** The environment variable at fault. */
    readonly variable: string,
    message: string,
  ) {
    super(message);
  }
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
  databaseDirectUrl: undefined,
  databasePreparedStatements: undefined,
  databasePipelinedUnits: true,
  dataDir: "./data",
  databasePoolMax: 10,
  databaseRetryMaxMs: 30_000,
  databaseProbeIntervalMs: 5_000,
  databaseStatementTimeoutMs: 20_000,
  shutdownDrainDelayMs: 0,
  shutdownGraceMs: 10_000,
  // Rows of a batch wait in memory while they are sent: 100 kept StreamIncompleteWorkflows'
  // peak RSS about 30 MB lower than 500 over 1,000,000 rows, at the same rows/s (docs/performance.md).
  streamBatchSize: 100,
  deleteBatchSize: 1_000,
  logLevel: "info",
  maxRequestBytes: 4 * 1024 * 1024,
  // What gRPC clients accept by default (grpc-go, grpc-java, grpc-js: 4 MiB per message).
  pageMaxBytes: 4 * 1024 * 1024,
  streamBatchMaxBytes: 1024 * 1024,
  streamsMax: 1_000,
  tenantStreamsMax: 100,
  // A message waiting for its client takes about three times its size in memory (README).
  streamsBufferMaxBytes: 128 * 1024 * 1024,
  // As many as a client with 32 calls in flight sends (bench/: the group commit
  // batches them); a larger burst waits in its own tenant's queue.
  tenantCallsMax: 32,
  tenantQueueMax: 256,
  authKeysFile: undefined,
  authKeys: undefined,
  authPublicHealth: true,
  authPublicReflection: true,
  tlsCertFile: undefined,
  tlsKeyFile: undefined,
  grpcFastPath: true,
  metricsPort: undefined,
  metricsMaxAgentSeries: 1_000,
  tracing: undefined,
  // Nothing is deleted unless the operator or the tenant says so.
  retentionDefaults: {
    completedExecutionMaxAge: 0,
    failedExecutionMaxAge: 0,
    cancelledExecutionMaxAge: 0,
    routingDecisionMaxAge: 0,
    closedCircuitBreakerMaxAge: 0,
    circuitBreakerTransitionMaxAge: 0,
  },
  retentionIntervalMs: 10 * 60_000,
  retentionBatchSize: 1_000,
};

/**
 * Reads the configuration from environment variables. Throws a ConfigError
 * naming the variable when one is malformed or set but empty, so that a typo stops the server at
 * startup instead of being silently replaced by a default.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = int(env, "PORT", 0, 65_535) ?? defaultConfig.port;
  const dashboardPort = int(env, "DASHBOARD_PORT", 0, 65_535);
  if (dashboardPort !== undefined && dashboardPort !== 0 && dashboardPort === port) {
    throw new ConfigError("DASHBOARD_PORT", `DASHBOARD_PORT must differ from PORT (both are ${port})`);
  }
  const metricsPort = int(env, "METRICS_PORT", 0, 65_535);
  if (metricsPort !== undefined && metricsPort !== 0 && (metricsPort === port || metricsPort === dashboardPort)) {
    const other = metricsPort === port ? "PORT" : "DASHBOARD_PORT";
    throw new ConfigError("METRICS_PORT", `METRICS_PORT must differ from ${other} (both are ${metricsPort}): the operations server needs a port of its own`);
  }
  return {
    host: str(env, "HOST") ?? defaultConfig.host,
    port,
    dashboardPort,
    databaseUrl: databaseUrl(env, "DATABASE_URL"),
    databaseDirectUrl: directUrl(env),
    databasePreparedStatements: bool(env, "DATABASE_PREPARED_STATEMENTS"),
    databasePipelinedUnits: bool(env, "DATABASE_PIPELINED_UNITS") ?? defaultConfig.databasePipelinedUnits,
    dataDir: str(env, "DATA_DIR") ?? defaultConfig.dataDir,
    logLevel: level(env, "LOG_LEVEL") ?? defaultConfig.logLevel,
    ...integerSettings(env),
    authKeysFile: str(env, "AUTH_KEYS_FILE"),
    authKeys: str(env, "AUTH_KEYS"),
    authPublicHealth: bool(env, "AUTH_PUBLIC_HEALTH") ?? defaultConfig.authPublicHealth,
    authPublicReflection: bool(env, "AUTH_PUBLIC_REFLECTION") ?? defaultConfig.authPublicReflection,
    tlsCertFile: str(env, "TLS_CERT_FILE"),
    tlsKeyFile: str(env, "TLS_KEY_FILE"),
    grpcFastPath: bool(env, "GRPC_FAST_PATH") ?? defaultConfig.grpcFastPath,
    metricsPort,
    metricsMaxAgentSeries: int(env, "METRICS_MAX_AGENT_SERIES", 0, 100_000) ?? defaultConfig.metricsMaxAgentSeries,
    tracing: tracing(env),
    retentionDefaults: {
      completedExecutionMaxAge: maxAge(env, "RETENTION_COMPLETED_EXECUTIONS") ?? 0,
      failedExecutionMaxAge: maxAge(env, "RETENTION_FAILED_EXECUTIONS") ?? 0,
      cancelledExecutionMaxAge: maxAge(env, "RETENTION_CANCELLED_EXECUTIONS") ?? 0,
      routingDecisionMaxAge: maxAge(env, "RETENTION_ROUTING_DECISIONS") ?? 0,
      closedCircuitBreakerMaxAge: maxAge(env, "RETENTION_CLOSED_CIRCUIT_BREAKERS") ?? 0,
      circuitBreakerTransitionMaxAge: maxAge(env, "RETENTION_CIRCUIT_BREAKER_TRANSITIONS") ?? 0,
    },
    retentionIntervalMs: retentionInterval(env, "RETENTION_INTERVAL") ?? defaultConfig.retentionIntervalMs,
    retentionBatchSize: int(env, "RETENTION_BATCH_SIZE", 1, 100_000) ?? defaultConfig.retentionBatchSize,
  };
}

/** Longest max age of a retention policy: 36,500 days (100 years), in seconds. */
export const MAX_RETENTION_SECONDS = 36_500 * 86_400;
/** Shortest non-zero max age of a retention policy, in seconds. */
export const MIN_RETENTION_SECONDS = 60;

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 };

/** A duration written as a whole number of s, m, h or d ("90d", "12h"), or "0"; in seconds. */
function seconds(env: NodeJS.ProcessEnv, name: string, what: string): number | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  const match = /^(\d{1,9})([smhd])?$/.exec(raw);
  if (match === null || (match[2] === undefined && match[1] !== "0")) {
    throw new ConfigError(name, `${name} must be ${what}, written as a whole number of s, m, h or d (e.g. "90d", "12h"), got "${raw}"`);
  }
  return Number(match[1]) * (DURATION_UNITS[match[2] ?? "s"] ?? 1);
}

/** A retention max age in seconds: 0 (keep forever), or from 1 minute to 36,500 days. */
function maxAge(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const what = "0 (keep forever) or a max age from 1m to 36500d";
  const value = seconds(env, name, what);
  if (value !== undefined && value !== 0 && (value < MIN_RETENTION_SECONDS || value > MAX_RETENTION_SECONDS)) {
    throw new ConfigError(name, `${name} must be ${what}, got "${str(env, name)}"`);
  }
  return value;
}

/** The background retention's interval in ms: 0 (off), or from 1s to 7d. */
function retentionInterval(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const what = "0 (no background retention) or an interval from 1s to 7d";
  const value = seconds(env, name, what);
  if (value !== undefined && value !== 0 && value > 7 * 86_400) throw new ConfigError(name, `${name} must be ${what}, got "${str(env, name)}"`);
  return value === undefined ? undefined : value * 1_000;
}

const SAMPLERS = ["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"] as const;

/**
 * Tracing from the OTEL_* variables of the OpenTelemetry specification. On
 * when OTEL_TRACES_EXPORTER is "otlp" or an OTLP endpoint is set, unless
 * OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is "none". The OTLP
 * exporter itself reads the rest of its variables (OTEL_EXPORTER_OTLP_HEADERS,
 * _TIMEOUT, _COMPRESSION, _CERTIFICATE and their _TRACES_ forms), as the
 * specification says.
 */
function tracing(env: NodeJS.ProcessEnv): TracingConfig | undefined {
  const disabled = bool(env, "OTEL_SDK_DISABLED") ?? false;
  const exporter = str(env, "OTEL_TRACES_EXPORTER");
  if (exporter !== undefined && exporter !== "otlp" && exporter !== "none") {
    throw new ConfigError("OTEL_TRACES_EXPORTER", `OTEL_TRACES_EXPORTER must be otlp or none (this server exports spans with OTLP only), got "${exporter}"`);
  }
  const tracesEndpoint = url(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const endpoint = url(env, "OTEL_EXPORTER_OTLP_ENDPOINT");
  if (disabled || exporter === "none" || (exporter === undefined && tracesEndpoint === undefined && endpoint === undefined)) return undefined;
  const protocol = str(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") === undefined ? "OTEL_EXPORTER_OTLP_PROTOCOL" : "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
  const protocolValue = str(env, protocol) ?? "http/protobuf";
  if (protocolValue !== "http/protobuf" && protocolValue !== "http/json") {
    throw new ConfigError(protocol, `${protocol} must be http/protobuf or http/json (grpc is not supported: use the collector's HTTP port, 4318), got "${protocolValue}"`);
  }
  const resourceAttributes = keyValues(env, "OTEL_RESOURCE_ATTRIBUTES");
  const sampler = str(env, "OTEL_TRACES_SAMPLER") ?? "parentbased_always_on";
  if (!(SAMPLERS as readonly string[]).includes(sampler)) {
    throw new ConfigError("OTEL_TRACES_SAMPLER", `OTEL_TRACES_SAMPLER must be one of ${SAMPLERS.join(", ")}, got "${sampler}"`);
  }
  const ratioRaw = str(env, "OTEL_TRACES_SAMPLER_ARG");
  const ratio = ratioRaw === undefined ? 1 : Number(ratioRaw);
  if (sampler.endsWith("traceidratio") && !(ratio >= 0 && ratio <= 1)) {
    throw new ConfigError("OTEL_TRACES_SAMPLER_ARG", `OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, got "${ratioRaw}"`);
  }
  return {
    url: tracesEndpoint ?? `${(endpoint ?? "http://localhost:4318").replace(/\/+$/, "")}/v1/traces`,
    protocol: protocolValue,
    serviceName: str(env, "OTEL_SERVICE_NAME") ?? resourceAttributes["service.name"] ?? "orchestrator-state",
    resourceAttributes,
    sampler: sampler as TracingConfig["sampler"],
    samplerRatio: ratio,
  };
}

function url(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, `${name} must be an http:// or https:// URL, got "${raw}"`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new ConfigError(name, `${name} must be an http:// or https:// URL, got "${raw}"`);
  return raw;
}

/** "k1=v1,k2=v2" with percent-encoded values (the W3C Baggage form OTEL_RESOURCE_ATTRIBUTES uses). */
function keyValues(env: NodeJS.ProcessEnv, name: string): Record<string, string> {
  const raw = str(env, name);
  const pairs: Record<string, string> = {};
  if (raw === undefined) return pairs;
  for (const part of raw.split(",")) {
    const at = part.indexOf("=");
    const key = at < 1 ? "" : part.slice(0, at).trim();
    let value: string | undefined;
    try {
      value = at < 1 ? undefined : decodeURIComponent(part.slice(at + 1).trim());
    } catch {
      value = undefined;
    }
    if (key === "" || value === undefined) throw new ConfigError(name, `${name} must be key=value pairs separated by commas, got "${raw}"`);
    pairs[key] = value;
  }
  return pairs;
}

/**
 * DATABASE_DIRECT_URL: PostgreSQL itself, checked like DATABASE_URL, and only
 * next to it (docs/scaling.md, PgBouncer).
 */
function directUrl(env: NodeJS.ProcessEnv): string | undefined {
  const url = databaseUrl(env, "DATABASE_DIRECT_URL");
  if (url !== undefined && env.DATABASE_URL === undefined) {
    throw new ConfigError("DATABASE_DIRECT_URL", "DATABASE_DIRECT_URL is set without DATABASE_URL: set both (DATABASE_URL through the pooler), or neither");
  }
  return url;
}

/**
 * A variable's value, trimmed; undefined when unset. Set but empty is an
 * error, not the default (OTEL_* aside): `DATABASE_URL=` from a template whose
 * secret was never filled in must not start the server on the embedded database.
 */
function str(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name];
  if (raw === undefined) return undefined;
  const value = raw.trim();
  // The OpenTelemetry specification reads an empty OTEL_* variable as unset.
  if (value === "" && name.startsWith("OTEL_")) return undefined;
  if (value === "") throw new ConfigError(name, `${name} is set but empty: give it a value, or unset it for the default`);
  return value;
}

/**
 * DATABASE_URL: a postgres:// or postgresql:// URL that parses (host, and a
 * port from 1 to 65535 when one is given). Checked here so that a typo stops
 * the server before anything is opened, instead of being retried as if the
 * database were down.
 */
function databaseUrl(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  const expected = `${name} must be a PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE`;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    // The value may hold a password: never repeated.
    throw new ConfigError(name, `${expected}; the value is not a URL`);
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new ConfigError(name, `${expected}; its scheme is "${parsed.protocol.slice(0, 20)}//", and this server speaks only to PostgreSQL`);
  }
  // A socket directory may stand in the query (?host=/var/run/postgresql) instead of the host.
  if (parsed.hostname === "" && parsed.searchParams.get("host") === null) throw new ConfigError(name, `${expected}; it names no host`);
  return raw;
}

/**
 * The integer settings read the same way: each one's variable, and the
 * smallest and largest value it accepts; unset, the setting is defaultConfig's.
 */
const INTEGER_SETTINGS = {
  databasePoolMax: ["DATABASE_POOL_MAX", 1, 1_000],
  databaseRetryMaxMs: ["DATABASE_RETRY_MAX_MS", 1, 600_000],
  databaseProbeIntervalMs: ["DATABASE_PROBE_INTERVAL_MS", 100, 600_000],
  databaseStatementTimeoutMs: ["DATABASE_STATEMENT_TIMEOUT_MS", 100, 3_600_000],
  shutdownDrainDelayMs: ["SHUTDOWN_DRAIN_DELAY_MS", 0, 600_000],
  shutdownGraceMs: ["SHUTDOWN_GRACE_MS", 0, 600_000],
  streamBatchSize: ["STREAM_BATCH_SIZE", 1, 10_000],
  deleteBatchSize: ["DELETE_BATCH_SIZE", 1, 100_000],
  maxRequestBytes: ["MAX_REQUEST_BYTES", 1_024, 1_073_741_824],
  pageMaxBytes: ["PAGE_MAX_BYTES", 65_536, 1_073_741_824],
  streamBatchMaxBytes: ["STREAM_BATCH_MAX_BYTES", 1_024, 1_073_741_824],
  streamsMax: ["STREAMS_MAX", 1, 1_000_000],
  tenantStreamsMax: ["TENANT_STREAMS_MAX", 1, 1_000_000],
  streamsBufferMaxBytes: ["STREAMS_BUFFER_MAX_BYTES", 1_048_576, 68_719_476_736],
  tenantCallsMax: ["TENANT_CALLS_MAX", 1, 100_000],
  tenantQueueMax: ["TENANT_QUEUE_MAX", 0, 1_000_000],
} as const satisfies { [K in keyof Config as Config[K] extends number ? K : never]?: readonly [string, number, number] };

type IntegerSettings = { -readonly [K in keyof typeof INTEGER_SETTINGS]: number };

/** Every setting of INTEGER_SETTINGS, from `env` or its default; a value out of range stops the process (ConfigError). */
function integerSettings(env: NodeJS.ProcessEnv): IntegerSettings {
  const values = {} as IntegerSettings;
  for (const [key, [name, min, max]] of Object.entries(INTEGER_SETTINGS) as [keyof IntegerSettings, readonly [string, number, number]][]) {
    values[key] = int(env, name, min, max) ?? defaultConfig[key];
  }
  return values;
}

function int(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new ConfigError(name, `${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

function level(env: NodeJS.ProcessEnv, name: string): LogLevel | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  if (!(logLevels as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `${name} must be one of ${logLevels.join(", ")}, got "${raw}"`);
  }
  return raw as LogLevel;
}

function bool(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  if (raw !== "true" && raw !== "false") throw new ConfigError(name, `${name} must be true or false, got "${raw}"`);
  return raw === "true";
}
