import { PGlite } from "@electric-sql/pglite";
import knexFactory, { type Knex } from "knex";
import ClientPgLite from "knex-pglite";
import pg from "pg";
import { createLogger, type Logger } from "../logging/logger.js";
import { ANSWER_GRACE_MS, DEFAULT_STATEMENT_TIMEOUT_MS, isServiceable } from "../connection/answer-timeout.js";
import { migrationSource } from "./migrations/index.js";
import { SESSION_SETTINGS_SQL } from "../connection/session-settings.js";
import { PG_TYPES, PGLITE_PARSERS } from "./type-parsers.js";

/** Where the data lives: a PostgreSQL server, or the embedded PGlite. */
export interface DatabaseOptions {
  /** PostgreSQL connection string. When unset, PGlite is used. */
  databaseUrl?: string | undefined;
  /** PGlite data directory; `memory://` keeps everything in memory (tests). */
  dataDir?: string;
  /** Maximum connections of the PostgreSQL pool (PGlite has exactly one). */
  poolMax?: number;
  /**
   * PostgreSQL: the longest a statement of a call may run (DATABASE_STATEMENT_TIMEOUT_MS);
   * a connection silent for ANSWER_GRACE_MS more is presumed dead (src/connection/answer-timeout.ts).
   */
  statementTimeoutMs?: number;
  /** Where Knex's own warnings go (pool errors, deprecations); stdout as JSON lines if unset. */
  logger?: Logger;
  /**
   * A connection string reaching PostgreSQL directly, when `databaseUrl` goes
   * through a transaction-mode pooler (PgBouncer): what needs a session of its
   * own (LISTEN, the retention lock, migrations) connects there.
   */
  databaseDirectUrl?: string | undefined;
  /**
   * Whether pipelined tenant units name their binding statement once per
   * connection (see src/tenancy/pipelined-unit.ts). Default: yes, unless
   * `databaseDirectUrl` is set (a transaction-mode pooler is in front).
   */
  preparedStatements?: boolean | undefined;
  /**
   * PGlite: start from this data directory, an archive made by PGlite's
   * `dumpDataDir`, instead of creating an empty one. The tests load one
   * migrated template (test/support/global-setup.ts) rather than run initdb
   * and every migration for each database.
   */
  pgliteArchive?: Blob;
  /**
   * PGlite: this open instance rather than one opened at `dataDir` (a
   * testability hook: the tests hand a file the database an earlier file
   * closed, test/support/backend.ts). Its session settings are the caller's.
   */
  pglite?: PGlite;
  /**
   * PostgreSQL: whether tenant units run pipelined (one round trip for a
   * single statement, on pinned library internals: src/tenancy/pipelined-unit.ts)
   * rather than on the default path of public APIs. Default: yes.
   */
  pipelinedUnits?: boolean | undefined;
}

/** The Knex configuration with what createDatabase adds to it. */
type DatabaseConfig = Knex.Config & {
  /** DATABASE_DIRECT_URL's connection settings (sessionConnectionConfig). */
  sessionConnection?: pg.ClientConfig;
  /** False: pipelined units parse their binding in every batch (src/tenancy/pipelined-unit.ts reads it). */
  namedStatements?: boolean;
  /** False: tenant units take the default path (src/tenancy/pipelined-unit.ts reads it). */
  pipelinedUnits?: boolean;
};

// knex-pglite names the command of a response after the builder method, so a
// `.delete()` (method "del") resolves to the raw response, command "DEL",
// instead of the deleted row count that Knex's PostgreSQL dialect gives for
// "DELETE". Knex's public postProcessResponse hook turns it back into the row
// count (test/contract/knex-pglite.pglite.test.ts shows knex-pglite's answer).
function pgliteRowCounts(result: unknown): unknown {
  const response = result as { command?: unknown; rowCount?: unknown } | null;
  if (typeof response === "object" && response !== null && response.command === "DEL") {
    return response.rowCount;
  }
  return result;
}

/**
 * Creates the Knex instance every query goes through: a `pg` pool when
 * `databaseUrl` is set, otherwise the embedded PGlite persisted in `dataDir`.
 * The schema and the queries are the same for both.
 */
export function createDatabase(options: DatabaseOptions): Knex {
  return knexFactory(databaseConfig(options));
}

// TCP keepalive on every PostgreSQL connection: an idle connection whose peer
// vanished (partition, failover) is found by the kernel after this much
// silence plus its probes, instead of failing the next call that takes it.
const KEEPALIVE_INITIAL_DELAY_MS = 10_000;

/** The Knex configuration behind `createDatabase`; knexfile.ts exports it for the knex CLI. */
export function databaseConfig(options: DatabaseOptions): Knex.Config {
  const logger = options.logger ?? createLogger("info");
  const common: Knex.Config = {
    migrations: { migrationSource, tableName: "knex_migrations" },
    // Knex would print these to the console as free text; keep stdout JSON.
    log: {
      warn: (message: unknown) => logger.warn("knex", { detail: withoutStackLines(message) }),
      error: (message: unknown) => logger.error("knex", { detail: withoutStackLines(message) }),
      deprecate: (method: string, alternative: string) => logger.warn("knex deprecation", { method, alternative }),
      debug: (message: unknown) => logger.debug("knex", { detail: String(message) }),
    },
  };
  if (options.databaseUrl !== undefined) {
    const named = options.preparedStatements ?? options.databaseDirectUrl === undefined;
    const connection = {
        connectionString: options.databaseUrl,
        // timestamptz and int8 as text (./type-parsers.ts).
        types: PG_TYPES,
        // Fail fast when the server is unreachable; the call answers UNAVAILABLE.
        connectionTimeoutMillis: 5_000,
        keepAlive: true,
        keepAliveInitialDelayMillis: KEEPALIVE_INITIAL_DELAY_MS,
        // The bound on waiting for an answer (src/connection/answer-timeout.ts).
        query_timeout: (options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS) + ANSWER_GRACE_MS,
      };
    const config: DatabaseConfig = {
      ...common,
      client: "pg",
      connection,
      sessionConnection: options.databaseDirectUrl === undefined ? undefined : { ...connection, connectionString: options.databaseDirectUrl },
      namedStatements: named,
      pipelinedUnits: options.pipelinedUnits ?? true,
      pool: {
        min: 0,
        max: options.poolMax ?? 10,
        // The settings the code relies on, whatever the database's defaults (src/connection/session-settings.ts).
        afterCreate: (connection: pg.Client, done: (err: Error | null, connection: pg.Client) => void) => {
          connection.query(SESSION_SETTINGS_SQL).then(
            () => done(null, connection),
            (err: Error) => done(err, connection),
          );
        },
        // Not presumed dead, no transaction open (src/connection/answer-timeout.ts): pg's
        // query_timeout fails a statement but leaves it in flight, and
        // whoever ran it closes the connection.
        validate: isServiceable,
      },
      acquireConnectionTimeout: 10_000,
    };
    return config;
  }
  const dataDir = options.dataDir ?? "./data";
  // Knex calls a function `connection` again on every acquire, besides
  // knex-pglite's own call: each call must return the same instance, or a
  // second PGlite opens the same directory and corrupts the next start.
  let pglite: PGlite | undefined;
  const open = () => {
    const db = new PGlite(dataDir, {
      loadDataDir: options.pgliteArchive,
      parsers: PGLITE_PARSERS,
    });
    // Its one connection is the database's one session: the settings the code
    // relies on (src/connection/session-settings.ts) go first. PGlite runs statements in the
    // order they were called, and this one is called before Knex has the instance.
    db.exec(SESSION_SETTINGS_SQL).catch((err: unknown) => logger.error("PGlite session settings failed", { error: String(err) }));
    return db;
  };
  return {
    ...common,
    // knex-pglite declares its client class as its own type, not as a Knex.Client constructor.
    client: ClientPgLite as unknown as typeof Knex.Client,
    dialect: "postgres",
    postProcessResponse: pgliteRowCounts,
    connection: () => ({ pglite: (pglite ??= options.pglite ?? open()) }) as object as Knex.StaticConnectionConfig,
  };
}

// Knex's warnings quote an error with its stack ("Acquire connection error: error:
// ...\n    at ..."), once per failed connection while the database is away.
function withoutStackLines(message: unknown): string {
  return String(message).split(/\n\s+at /, 1)[0]!;
}

/** The advisory lock key of migrations (any constant bigint; this one spells "migra"). */
export const MIGRATION_LOCK_KEY = "109105103114097";

/**
 * Applies every pending migration. Safe to run on every start and from
 * several replicas at once: one replica migrates, and the others wait for it
 * here instead of failing. Resolves with the names of the migrations this
 * call applied (none when the schema was up to date).
 */
export async function migrate(knex: Knex, timeoutMs = 60_000): Promise<string[]> {
  // Behind a pooler, over a connection of their own to PostgreSQL itself.
  const direct = (knex.client as { config: DatabaseConfig }).config.sessionConnection;
  const deadline = Date.now() + timeoutMs;
  const release = await migrationLock(knex, deadline, timeoutMs);
  const migrator = withoutAnswerTimeout(knex, direct);
  try {
    for (;;) {
      try {
        const [, applied] = (await migrator.migrate.latest()) as [number, string[]];
        return applied;
      } catch (err) {
        const locked = err instanceof Error && err.message.includes("Migration table is already locked");
        if (!locked || Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  } finally {
    if (migrator !== knex) await migrator.destroy();
    await release();
  }
}

/**
 * PostgreSQL: waits, until `deadline`, for an advisory lock that one process
 * migrating the database holds at a time, and resolves with its release.
 * Knex's own migration lock does not cover Knex's first step, creating its two
 * tables: on a brand-new database replicas started together failed with
 * "relation already exists", and two that both found the lock table empty
 * each inserted a lock row, after which Knex's lock (an UPDATE that must
 * change exactly one row) could never be taken again.
 *
 * The lock is a transaction's (pg_try_advisory_xact_lock), held by a
 * transaction left open on a connection of its own outside the pool while the
 * migrations run, so that it works through a transaction-mode pooler too: the
 * pooler keeps that transaction on one server connection, where a
 * session-level lock would stay behind on whichever server connection took
 * it. A process that dies mid-migration drops its connection, which rolls the
 * transaction back and releases the lock. PGlite: one process per data
 * directory.
 */
async function migrationLock(knex: Knex, deadline: number, timeoutMs: number): Promise<() => Promise<void>> {
  if ((knex.client as { config: Knex.Config }).config.client !== "pg") return async () => {};
  const session = new pg.Client(sessionConnectionConfig(knex));
  session.on("error", () => {}); // a broken connection ends the lock; the migration's own statements report errors
  const release = async () => {
    await session.query("ROLLBACK").catch(() => {});
    await session.end().catch(() => {});
  };
  try {
    await session.connect();
    // Idle in this transaction for as long as the migrations take.
    await session.query("BEGIN; SELECT set_config('idle_in_transaction_session_timeout', '0', true)");
    for (;;) {
      const { rows } = await session.query<{ locked: boolean }>("SELECT pg_try_advisory_xact_lock($1::bigint) AS locked", [MIGRATION_LOCK_KEY]);
      if (rows[0]?.locked === true) return release;
      if (Date.now() > deadline) throw new Error(`another process held the migration lock for more than ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } catch (err) {
    await release();
    throw err;
  }
}

/**
 * For PostgreSQL, a Knex of one connection like `knex`'s (over `direct`, when
 * given) but without the bound on waiting for an answer: a migration may
 * legitimately run for minutes (an index on a large table). PGlite's Knex as
 * it is (it has no such bound, and only one connection).
 */
function withoutAnswerTimeout(knex: Knex, direct?: pg.ClientConfig): Knex {
  const config = (knex.client as { config: Knex.Config }).config;
  const connection = (direct ?? config.connection) as { query_timeout?: number } | undefined;
  if (config.client !== "pg" || typeof connection !== "object" || (connection.query_timeout === undefined && direct === undefined)) return knex;
  return knexFactory({ ...config, connection: { ...connection, query_timeout: undefined } as Knex.StaticConnectionConfig, pool: { ...config.pool, min: 0, max: 1 } });
}

/**
 * The connection settings of a session of its own (a `pg.Client` outside the
 * pool: LISTEN, session-level advisory locks): DATABASE_DIRECT_URL's when set,
 * since a transaction-mode pooler hands a session's statements to any server
 * connection; otherwise the pool's.
 */
export function sessionConnectionConfig(knex: Knex): pg.ClientConfig {
  const config = (knex.client as { config: DatabaseConfig }).config;
  return config.sessionConnection ?? (config.connection as pg.ClientConfig);
}
