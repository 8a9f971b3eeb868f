import { PGlite, types as pgliteTypes } from "@electric-sql/pglite";
import knexFactory, { type Knex } from "knex";
import ClientPgLite from "knex-pglite";
import pg from "pg";
import { migrationSource } from "./migrations/index.js";

/** Where the data lives: a PostgreSQL server, or the embedded PGlite. */
export interface DatabaseOptions {
  /** PostgreSQL connection string. When unset, PGlite is used. */
  databaseUrl?: string | undefined;
  /** PGlite data directory; `memory://` keeps everything in memory (tests). */
  dataDir?: string;
  /** Maximum connections of the PostgreSQL pool (PGlite has exactly one). */
  poolMax?: number;
}

// timestamptz and int8 are read as their text form on both backends: the
// default parsers turn timestamptz into a JS Date, which drops microseconds,
// and PGlite turns int8 into a lossy number. src/db/convert.ts parses both.
const TIMESTAMPTZ_OID = 1184;
const INT8_OID = 20;
const asText = (value: string) => value;

/**
 * Creates the Knex instance every query goes through: a `pg` pool when
 * `databaseUrl` is set, otherwise the embedded PGlite persisted in `dataDir`.
 * The schema and the queries are the same for both.
 */
export function createDatabase(options: DatabaseOptions): Knex {
  return knexFactory(databaseConfig(options));
}

/** The Knex configuration behind `createDatabase`; knexfile.ts exports it for the knex CLI. */
export function databaseConfig(options: DatabaseOptions): Knex.Config {
  const common: Knex.Config = {
    migrations: { migrationSource, tableName: "knex_migrations" },
    // Objection and our queries use snake_case columns as they are.
    asyncStackTraces: false,
  };
  if (options.databaseUrl !== undefined) {
    return {
      ...common,
      client: "pg",
      connection: {
        connectionString: options.databaseUrl,
        types: {
          getTypeParser: (oid: number, format?: string) =>
            oid === TIMESTAMPTZ_OID || oid === INT8_OID
              ? asText
              : pg.types.getTypeParser(oid, format as "text"),
        },
        // Fail fast when the server is unreachable; the call answers UNAVAILABLE.
        connectionTimeoutMillis: 5_000,
      },
      pool: { min: 0, max: options.poolMax ?? 10 },
      acquireConnectionTimeout: 10_000,
    };
  }
  const dataDir = options.dataDir ?? "./data";
  return {
    ...common,
    client: ClientPgLite as unknown as typeof Knex.Client,
    dialect: "postgres",
    connection: () =>
      ({
        pglite: new PGlite(dataDir, {
          parsers: { [pgliteTypes.TIMESTAMPTZ]: asText, [pgliteTypes.INT8]: asText },
        }),
      }) as object as Knex.StaticConnectionConfig,
  };
}

/**
 * Applies every pending migration. Safe to run on every start and from
 * several replicas at once: Knex's migration lock lets one replica migrate,
 * and the others wait for it here instead of failing.
 */
export async function migrate(knex: Knex, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await knex.migrate.latest();
      return;
    } catch (err) {
      const locked = err instanceof Error && err.message.includes("Migration table is already locked");
      if (!locked || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
