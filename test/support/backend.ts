import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, openAsBlob } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import type { PGlite } from "@electric-sql/pglite";
import type { Knex } from "knex";
import { afterAll, beforeAll, inject } from "vitest";
import { SESSION_SETTINGS_SQL } from "../../src/connection/session-settings.js";
import { createDatabase, migrate } from "../../src/db/database.js";
import { silentLogger } from "../../src/logging/logger.js";
import { TEMPLATES_FAILED, TEMPLATES_READY } from "./pglite-templates.js";

/**
 * The database every storage test runs on: the embedded PGlite (in memory) by
 * default, or the PostgreSQL server named by TEST_DATABASE_URL (CI sets it, so
 * the same tests run on both). Tests isolate themselves with fresh random
 * tenants, so files can share one PostgreSQL database. Tests for one backend
 * only live in *.postgres.test.ts and *.pglite.test.ts files, which
 * vitest.config.ts collects only on that backend.
 */
export const backendName = process.env.TEST_DATABASE_URL ? "postgres" : "pglite";

/**
 * TEST_DATABASE_URL, for *.postgres.test.ts files: vitest.config.ts collects
 * them only when it is set, so this throws only if one is run some other way.
 */
export function postgresUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error("*.postgres.test.ts files need TEST_DATABASE_URL (a PostgreSQL database)");
  return url;
}

/**
 * TEST_DATABASE_DIRECT_URL: set when TEST_DATABASE_URL goes through a
 * transaction-mode pooler (.ci/run starts PgBouncer in front of PostgreSQL),
 * naming PostgreSQL itself. Servers and databases the tests make then get
 * the matching DATABASE_DIRECT_URL (same database, user and options, the
 * direct host and port), and, with it, no named prepared statements.
 */
const directUrl = process.env.TEST_DATABASE_DIRECT_URL;

/** `url` (a database of TEST_DATABASE_URL's server, maybe through a TCP proxy) with TEST_DATABASE_DIRECT_URL's host and port. */
function directFor(url: string): string | undefined {
  if (!directUrl) return undefined;
  const direct = new URL(directUrl);
  const target = new URL(url);
  target.host = direct.host;
  return target.toString();
}

/**
 * The createDatabase options for a PostgreSQL database of the tests' server
 * (TEST_DATABASE_URL by default): behind the CI's pooler, with its direct
 * URL. `direct: false` leaves the direct URL out (a URL through a test's own
 * TCP proxy, whose outages a direct connection would bypass) and still turns
 * named statements off.
 */
export function postgresOptions(url: string = postgresUrl(), { direct = true } = {}): { databaseUrl: string; databaseDirectUrl?: string; preparedStatements?: boolean } {
  if (!directUrl) return { databaseUrl: url };
  return direct ? { databaseUrl: url, databaseDirectUrl: directFor(url) } : { databaseUrl: url, preparedStatements: false };
}

/** The same as environment variables of a server process (DATABASE_URL, and DATABASE_DIRECT_URL behind the pooler). */
export function postgresEnv(url: string = postgresUrl(), { direct = true } = {}): Record<string, string> {
  if (!directUrl) return { DATABASE_URL: url };
  return direct ? { DATABASE_URL: url, DATABASE_DIRECT_URL: directFor(url)! } : { DATABASE_URL: url, DATABASE_PREPARED_STATEMENTS: "false" };
}

/** PostgreSQL itself: TEST_DATABASE_DIRECT_URL behind the CI's pooler, else TEST_DATABASE_URL (for tests of PostgreSQL's own answers). */
export function directPostgresUrl(): string {
  return directUrl || postgresUrl();
}

declare module "vitest" {
  export interface ProvidedContext {
    /**
     * Archives (PGlite's dumpDataDir) of a new and of a migrated PGlite data
     * directory, written into `dir` while the run starts (global-setup.ts):
     * read them through pgliteTemplate. Unset on PostgreSQL.
     */
    pgliteTemplates: { dir: string; empty: string; migrated: string } | undefined;
    /** A temporary directory of this run, removed at its end (global-setup.ts). */
    runDir: string;
  }
}

/**
 * The path of the run's template `template` (global-setup.ts), once its
 * archive is complete; undefined outside npm test's configuration (and on
 * PostgreSQL).
 */
export async function pgliteTemplate(template: "empty" | "migrated"): Promise<string | undefined> {
  const templates = inject("pgliteTemplates");
  if (templates === undefined) return undefined;
  for (const end = Date.now() + 120_000; ; await new Promise((resolve) => setTimeout(resolve, 50))) {
    if (existsSync(path.join(templates.dir, TEMPLATES_READY))) return templates[template];
    if (existsSync(path.join(templates.dir, TEMPLATES_FAILED))) {
      throw new Error(`making the PGlite templates failed: ${await fs.readFile(path.join(templates.dir, TEMPLATES_FAILED), "utf8")}`);
    }
    if (Date.now() > end) throw new Error("the PGlite templates were not made within 120 s");
  }
}

/**
 * A new in-memory PGlite, started from the run's template (global-setup.ts):
 * `migrated` or `empty` (as created, no migration run).
 */
export async function createPgliteDatabase(template: "empty" | "migrated"): Promise<Knex> {
  const archive = await pgliteTemplate(template);
  return createDatabase({ dataDir: "memory://", pgliteArchive: archive === undefined ? undefined : await openAsBlob(archive), logger: silentLogger });
}

/**
 * A new PGlite data directory on disk (a server process's DATA_DIR), already
 * migrated: the run's migrated template unpacked (`tar`) into a new temporary
 * directory, `prefix` naming it; remove it in afterAll. In a new, empty
 * directory the server would first run initdb and every migration, tens of
 * seconds on a loaded machine, in tests about something else (what a first
 * start does is test/lifecycle/fail-fast.test.ts's). `template: "empty"`:
 * a database as initdb leaves it, for tests of what runs every migration.
 * Without the template (run outside npm test's configuration) the directory
 * is left empty.
 */
export async function createPgliteDataDir(prefix: string, template: "empty" | "migrated" = "migrated"): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  const archive = await pgliteTemplate(template);
  if (archive !== undefined) await promisify(execFile)("tar", ["-xf", archive, "-C", dir]);
  return dir;
}

/**
 * The PGlite databases of createTestDatabase that their Knex closed, kept
 * open by this worker process for the next ones it is asked for: vitest.config.ts
 * keeps a worker between files (isolate: false), and loading the template
 * into a new PGlite is over a second of CPU, spent again by nearly every file.
 * Files of a worker then share a database one after another, as every file
 * of a PostgreSQL run shares one (tests isolate themselves with fresh random
 * tenants); two Knex instances never hold one PGlite at once. On globalThis:
 * one list per process, whatever vitest does with this module between files.
 */
const closedPglites: PGlite[] = ((globalThis as { [k: symbol]: PGlite[] | undefined })[Symbol.for("orchestrator-state.closedPglites")] ??= []);

/**
 * A Knex over a closed PGlite of this process, or else over a new one from
 * the migrated template, whose close() (Knex's destroy calls it) keeps the
 * instance for the next file instead: with its session as a new one would
 * be (any transaction rolled back, DISCARD ALL, the session settings of
 * src/connection/session-settings.ts), or, if that fails, closed for real.
 */
async function reusedPgliteDatabase(): Promise<Knex> {
  const closed = closedPglites.pop();
  if (closed !== undefined) return createDatabase({ dataDir: "memory://", pglite: closed, logger: silentLogger });
  const knex = await createPgliteDatabase("migrated");
  const pglite = (await knex.client.acquireConnection()) as PGlite;
  await knex.client.releaseConnection(pglite);
  const close = pglite.close.bind(pglite);
  pglite.close = async () => {
    try {
      // One by one: statements sent together run as one transaction, and DISCARD ALL refuses to run in one.
      for (const sql of ["ROLLBACK", "DISCARD ALL", SESSION_SETTINGS_SQL]) await pglite.exec(sql);
    } catch {
      return close();
    }
    closedPglites.push(pglite);
  };
  return knex;
}

/**
 * A migrated database for one test file; destroy it in afterAll. On PGlite a
 * database an earlier file of this worker closed, or a copy of the migrated
 * template (reusedPgliteDatabase); migrate() still runs, finding nothing to do
 * (or, run outside npm test's configuration, everything).
 */
export async function createTestDatabase(): Promise<Knex> {
  const url = process.env.TEST_DATABASE_URL;
  const knex = url ? createDatabase({ ...postgresOptions(url), poolMax: 10, logger: silentLogger }) : await reusedPgliteDatabase();
  await migrate(knex);
  return knex;
}

/**
 * A migrated database with exactly one connection (PGlite only ever has one),
 * for tests that hold it to make the calls behind it wait; destroy it in afterAll.
 */
export async function createSingleConnectionDatabase(): Promise<Knex> {
  const url = process.env.TEST_DATABASE_URL;
  if (url === undefined) return createTestDatabase();
  const knex = createDatabase({ ...postgresOptions(url), poolMax: 1, logger: silentLogger });
  await migrate(knex);
  return knex;
}

/**
 * A database of its own, not migrated, for tests that must see every tenant's
 * rows or change the schema (retention passes across tenants, migrations): a
 * fresh in-memory PGlite, or a scratch PostgreSQL database created next to
 * TEST_DATABASE_URL's. `drop` closes it and drops the scratch database.
 */
export async function createScratchDatabase(name: string): Promise<{ knex: Knex; url?: string; drop(): Promise<void> }> {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) {
    const knex = await createPgliteDatabase("empty");
    return { knex, drop: () => knex.destroy() };
  }
  const admin = createDatabase({ ...postgresOptions(url), poolMax: 1, logger: silentLogger });
  const scratch = `${name}_${randomUUID().replaceAll("-", "")}`;
  await admin.raw(`CREATE DATABASE ${scratch}`);
  const scratchUrl = new URL(url);
  scratchUrl.pathname = `/${scratch}`;
  const knex = createDatabase({ ...postgresOptions(scratchUrl.toString()), poolMax: 4, logger: silentLogger });
  return {
    knex,
    url: scratchUrl.toString(),
    async drop() {
      await knex.destroy();
      await admin.raw(`DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`);
      await admin.destroy();
    },
  };
}

/**
 * Runs the migrations of `knex` (a scratch database) one by one up to, not
 * including, `migration`, for a test of that migration on the rows of the
 * schema before it. Throws when it is not pending.
 */
export async function migrateUpTo(knex: Knex, migration: string): Promise<void> {
  for (;;) {
    const [, pending] = (await knex.migrate.list()) as [unknown[], unknown[]];
    const next = pending[0] as string | { file?: string; name?: string } | undefined;
    const name = typeof next === "string" ? next : (next?.file ?? next?.name);
    if (name === undefined) throw new Error(`${migration} is not pending`);
    if (name === migration) return;
    await knex.migrate.up();
  }
}

/**
 * The database of a migration's test file: a scratch database (`name`, see
 * createScratchDatabase) migrated up to, not including, `migration` before
 * the file's tests, handed to `use`, and dropped after them.
 */
export function scratchBeforeMigration(name: string, migration: string, use: (knex: Knex) => void): void {
  let scratch: Awaited<ReturnType<typeof createScratchDatabase>> | undefined;
  beforeAll(async () => {
    scratch = await createScratchDatabase(name);
    use(scratch.knex);
    await migrateUpTo(scratch.knex, migration);
  });
  afterAll(async () => {
    await scratch?.drop();
  });
}

/**
 * How many rows of `table` the tenant role (orchestrator_tenant) sees when
 * bound to `tenant`: what row-level security lets a tenant read, for tests
 * that check a migration kept tenants apart.
 */
export async function rowsVisibleTo(knex: Knex, table: string, tenant: string): Promise<number> {
  return knex.transaction(async (trx) => {
    await trx.raw("SELECT set_config('role', 'orchestrator_tenant', true), set_config('app.tenant_id', ?, true)", [tenant]);
    const { rows } = await trx.raw<{ rows: { n: string }[] }>("SELECT count(*) AS n FROM ??", [table]);
    return Number(rows[0]!.n);
  });
}
