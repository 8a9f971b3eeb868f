// Over 400 lines: the one adapter on Knex's and pg's internals (one round trip per unit, statements planned once), kept in one sealed file that only row-level-security.ts imports.
import type { Knex } from "knex";
import pg from "pg";
import { presumeDead } from "../connection/answer-timeout.js";
import { isStalePlan, isUnanswered } from "../errors/database-errors.js";
import { refusal, type TenantUnit, type UnitRunner } from "./tenant-unit.js";

// The pipelined tenant unit: an adapter on library internals, for speed.
// Pinned: knex 3.3.0, pg 8.23.1 (its Query, which pulls in pg-protocol's
// messages through pg's Connection); test/contract/pinned-internals.test.ts
// fails when an upgrade moves what this file relies on. Only
// src/tenancy/row-level-security.ts imports it: it runs a unit here when
// `pipelines()` says so (a pg connection, DATABASE_PIPELINED_UNITS not false),
// otherwise on the public default path (src/tenancy/tenant-unit.ts), which
// gives the same guarantees in more round trips. Why it exists: a statement
// unit then costs one round trip, like the bare statement, instead of four
// (BEGIN, binding, statement, COMMIT); see docs/performance.md.
//
// The binding (one SELECT of set_config: tenant, role, statement_timeout) is
// never sent on its own: it travels with the unit's first statement, and
// nothing is sent before that. The first statement goes out as ONE
// extended-protocol batch closed by ONE Sync: [BEGIN,] binding, statement.
// PostgreSQL runs everything up to a Sync in one transaction and, at the
// first error, skips the rest of the batch up to the Sync: the statement runs
// only if the binding ran before it, in the same transaction. The binding's
// values travel as bind parameters, never inside the SQL text.
// - kind "statement" (TenantScope.run): no BEGIN. The batch is an implicit
//   transaction: the Sync commits it (rolls it back on error) and, with it,
//   ends the transaction-local settings. One round trip in all, like the
//   bare statement; no COMMIT to send.
// - kind "transaction" (TenantScope.transaction): the batch starts with
//   BEGIN, so the transaction stays open after the Sync for the next
//   statements, and ends with COMMIT or ROLLBACK: one round trip for BEGIN,
//   binding and first statement, then one per statement.
// The prefix (BEGIN, the binding) is named, parsed once per connection (see
// BoundQuery), and so are the units' hot statements marked PLAN_ONCE
// (hotStatementName): PostgreSQL then plans them once per connection, not on
// every call, which was most of what a unary call cost it
// (docs/performance.md, "Planning on every call").
// The first statement always goes by the extended protocol, so it cannot be
// several statements in one string (PostgreSQL refuses it).
//
// Kind "statement" runs exactly one statement: it is committed once it
// succeeded, whatever the work does next, and a second statement, which would
// run outside any binding, is refused before it is sent. A unit that sends no
// statement sends nothing at all.
//
// No Knex transaction: Knex's would send its own BEGIN, alone, and costs about
// twice the CPU of the statement itself (a Transaction, a client and a whole
// new Knex instance per transaction). A unit hands its work a Knex of its own
// instead, cheap to make: a client and a context inheriting from the
// application's (same dialect, configuration, events), whose connection is the
// unit's, and whose queries go through the unit (binding, one-statement rule,
// refusal after the unit's end). It relies on these parts of Knex 3 (lib/
// knex-builder/make-knex.js, lib/client.js, lib/execution/runner.js): a Knex
// instance reaches its client only through `this.context.client`; a query runs
// through `client.acquireConnection()`, `client._query(connection, { sql,
// bindings, options })` and `client.releaseConnection()`. On pg it relies on
// Query's hooks (prepare, handleRowDescription, handleDataRow,
// handleCommandComplete, handleError) and on the Connection's parse, bind and
// execute. test/tenancy/tenant-unit.test.ts and tenant-unit.postgres.test.ts
// pin the behaviour (round trips included).

/**
 * Whether units on `connection` of `knex` run here: a pg connection, unless
 * the database was made with pipelinedUnits false (DATABASE_PIPELINED_UNITS).
 */
export function pipelines(knex: Knex, connection: unknown): boolean {
  return connection instanceof pg.Client && (knex.client as { config: { pipelinedUnits?: boolean } }).config.pipelinedUnits !== false;
}

/** The query object Knex hands a client's `_query`. */
interface QueryObject {
  sql: string;
  bindings?: unknown[];
  options?: Record<string, unknown>;
  response?: unknown;
}

/** The part of a Knex client a unit uses or replaces. */
interface KnexClient {
  _query(connection: unknown, obj: QueryObject): Promise<QueryObject>;
  _stream(...args: unknown[]): Promise<unknown>;
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<unknown>;
  transaction(...args: unknown[]): unknown;
  destroy(...args: unknown[]): unknown;
}

const unitEnded = () => new Error("the tenant unit has ended: a statement sent after its end is refused");

/** The pipelined path, on a pg connection (see above). */
export const runPipelinedUnit: UnitRunner = async (knex, connection, unit, work) => {
  const run = new UnitRun(knex, connection, unit);
  try {
    let result: Awaited<ReturnType<typeof work>>;
    try {
      result = await work(run.db as Knex.Transaction);
    } catch (err) {
      // A connection that did not answer in time is presumed dead (a
      // partition): closed now, so that the ROLLBACK fails at once instead of
      // waiting behind the unanswered statement, and the pool discards it.
      if (isUnanswered(err) || isStalePlan(err)) run.discard();
      // The work's error is the one to report; a ROLLBACK that fails as well
      // has already taken its connection out of service (see end()).
      await run.end("ROLLBACK").catch(() => {});
      throw err;
    }
    await run.end("COMMIT");
    return result;
  } finally {
    run.closed = true;
  }
};

class UnitRun {
  /** The Knex the unit's work runs its statements on. */
  readonly db: Knex;
  /** True once BEGIN was sent and neither COMMIT nor ROLLBACK yet: the unit must end one or the other. */
  private open = false;
  /** The first statement, sent with the binding; undefined until then. */
  private first: Promise<QueryObject> | undefined;
  /** Set once the work settled: statements still waiting to go out are refused. */
  private ending = false;
  /** Set once the unit ended: every statement is refused. */
  closed = false;
  private readonly root: KnexClient;

  constructor(
    knex: Knex,
    private readonly connection: unknown,
    private readonly unit: TenantUnit,
  ) {
    this.root = knex.client as KnexClient;
    // DATABASE_PREPARED_STATEMENTS=false (src/db/database.ts): behind a
    // transaction-mode pooler that does not keep named statements (PgBouncer
    // before 1.21, or with max_prepared_statements = 0), consecutive units of
    // one client connection run on different server connections, so the
    // binding is parsed in every batch instead of named once per connection.
    if ((knex.client as { config: { namedStatements?: boolean } }).config.namedStatements === false) {
      unnamedOn.add(this.pgConnection);
    }
    const client = Object.create(this.root) as KnexClient;
    client.acquireConnection = () => Promise.resolve(connection);
    client.releaseConnection = () => Promise.resolve();
    client._query = (_connection, obj) => this.send(obj);
    // pg streams (pg-query-stream) would bypass _query, and with it the binding.
    client._stream = () => Promise.reject(new Error("a tenant unit cannot stream a query"));
    client.transaction = () => {
      throw refusal.nestedTransaction();
    };
    client.destroy = () => {
      throw new Error("a tenant unit cannot destroy the pool");
    };
    const context = Object.create((knex as unknown as { context: object }).context) as { client: KnexClient };
    context.client = client;
    // A Knex is a function (db("table") starts a query) that finds everything
    // else on the application's Knex, through `this.context`.
    const db = function (tableName?: string, options?: unknown) {
      const builder = (context as unknown as { queryBuilder(): Knex.QueryBuilder }).queryBuilder();
      return tableName ? builder.table(tableName, options as never) : builder;
    };
    Object.setPrototypeOf(db, knex);
    (db as unknown as { context: object }).context = context;
    this.db = db as unknown as Knex;
  }

  /** Closes the connection: the pool discards it. */
  discard(): void {
    presumeDead(this.connection);
  }

  /** Ends the unit: sends COMMIT or ROLLBACK if a transaction is open. */
  async end(how: "COMMIT" | "ROLLBACK"): Promise<void> {
    this.ending = true;
    // A statement the work did not wait for settles first (the driver would
    // queue COMMIT or ROLLBACK after it anyway).
    await this.first?.catch(() => {});
    if (!this.open) return;
    this.open = false;
    try {
      await this.root._query(this.connection, { sql: how });
    } catch (err) {
      // A connection whose transaction may still be open, bound to the tenant,
      // must not serve anyone else: closing it makes Knex's pool discard it.
      presumeDead(this.connection);
      throw err;
    }
  }

  private async send(obj: QueryObject): Promise<QueryObject> {
    if (this.closed || this.ending) throw unitEnded();
    if (this.first === undefined) {
      this.first = this.sendFirst(obj);
      return this.first;
    }
    if (this.unit.kind === "statement") {
      throw refusal.secondStatement();
    }
    // A later statement goes out once the first one, and with it BEGIN and the
    // binding, succeeded: never before, never after they failed.
    try {
      await this.first;
    } catch (err) {
      throw new Error("the tenant unit's first statement failed, so its transaction cannot run more", { cause: err });
    }
    if (this.closed || this.ending) throw unitEnded();
    return this.root._query(this.connection, this.named(obj));
  }

  private async sendFirst(obj: QueryObject): Promise<QueryObject> {
    const binding = this.unit.binding();
    const prefix = this.unit.kind === "statement" ? [binding] : [BEGIN, binding];
    this.open = this.unit.kind === "transaction";
    // Named only in a batch that parses nothing else: pg counts every
    // ParseComplete of a query as its own statement's, so a prefix parsed in
    // the same batch would have it believe the statement parsed before it
    // was (and, after a failure, when it never was).
    const named = prefix.every((p) => prefixPrepared(this.pgConnection, p.sql)) ? this.named(obj) : obj;
    return sendBound(this.connection as pg.Client, named, prefix);
  }

  private get pgConnection(): PgConnection {
    return (this.connection as unknown as { connection: PgConnection }).connection;
  }

  /** `obj`, with its statement's name when it is marked PLAN_ONCE and hot, on a connection that keeps named statements. */
  private named(obj: QueryObject): QueryObject {
    if (obj.options?.planOnce !== true || unnamedOn.has(this.pgConnection)) return obj;
    const name = hotStatementName(obj.sql);
    return name === undefined ? obj : { ...obj, options: { ...obj.options, name } };
  }
}

/** A statement of the prefix of a bound query: SQL with $n parameters, and their values. */
interface PrefixStatement {
  sql: string;
  values: string[];
}

// pg's Query, with the methods it calls on itself (undeclared by @types/pg).
interface PgQueryInternals {
  prepare(connection: PgConnection): void;
  handleRowDescription(msg: unknown): void;
  handleDataRow(msg: unknown): void;
  handleCommandComplete(msg: unknown, connection: PgConnection): void;
  handleError(err: Error, connection: PgConnection): void;
}
interface PgConnection {
  parse(msg: { text: string; name?: string }): void;
  bind(msg: { statement?: string; values: string[] }): void;
  execute(msg: object): void;
}
type PgQueryConfig = pg.QueryConfig & { callback: (err: Error | null, res: pg.QueryResult) => void };
const PgQuery = pg.Query as unknown as new (config: PgQueryConfig) => PgQueryInternals;

// The prefix statements (BEGIN, the binding) are named prepared statements on
// each connection, parsed and planned by the server once per connection
// instead of once per unit. A connection's names are trusted only once a
// batch ran the statement (CommandComplete); when a batch fails before that,
// the name may or may not exist on the server, so that connection goes back
// to unnamed statements for good (Parse every time: correct whatever the
// server has).
const statementNames = new Map<string, string>();
const preparedOn = new WeakMap<PgConnection, Set<string>>();
const unnamedOn = new WeakSet<PgConnection>();
function statementName(sql: string): string {
  let name = statementNames.get(sql);
  if (name === undefined) statementNames.set(sql, (name = `tenant_unit_${statementNames.size + 1}`));
  return name;
}

const BEGIN: PrefixStatement = { sql: "BEGIN", values: [] };

/** Whether the prefix statement `sql` is already a named statement on `connection` (a batch with it parses nothing for it). */
function prefixPrepared(connection: PgConnection, sql: string): boolean {
  return !unnamedOn.has(connection) && preparedOn.get(connection)?.has(statementName(sql)) === true;
}

// A unit's own statements marked PLAN_ONCE (src/tenancy/tenant-scope.ts: key
// lookups and writes of unary calls, whose best plan does not depend on their
// values) are named too once they are hot: pg then parses a statement once
// per connection and binds it by name afterwards, and PostgreSQL plans it
// once (a generic plan after its first five runs, when that costs no more),
// instead of parsing and planning it on every call. Only those: a generic
// plan is chosen on estimates without the values, and for a claim batch it
// read every incomplete row of the tenant per batch (B6 at 240 rows/s).
// pg keeps the names it parsed per connection (parsedStatements) and parses
// again on a new one. Bounded: a text is named once it ran HOT_RUNS times in
// this process, and at most MAX_HOT names exist, each of at most
// MAX_HOT_SQL characters, so the texts that vary with their input (a batch
// insert of N rows) stay unnamed instead of filling each server connection
// with plans. Not behind DATABASE_PREPARED_STATEMENTS=false (unnamedOn): a
// transaction-mode pooler would send the Bind to a connection that never
// saw the Parse.
const HOT_RUNS = 4;
const MAX_HOT = 64;
const MAX_HOT_SQL = 8_192;
const hotNames = new Map<string, string>();
const runsOf = new Map<string, number>();

function hotStatementName(sql: string): string | undefined {
  const name = hotNames.get(sql);
  if (name !== undefined || hotNames.size >= MAX_HOT || sql.length > MAX_HOT_SQL) return name;
  const runs = (runsOf.get(sql) ?? 0) + 1;
  if (runs < HOT_RUNS) {
    // Counting starts over rather than grow with every text ever seen.
    if (runsOf.size >= 4 * MAX_HOT) runsOf.clear();
    runsOf.set(sql, runs);
    return undefined;
  }
  runsOf.delete(sql);
  const hot = `tenant_unit_hot_${hotNames.size + 1}`;
  hotNames.set(sql, hot);
  return hot;
}

/**
 * A pg query that sends the statements of `prefix` before its own statement,
 * in the same batch (one Sync, one round trip), and answers only its own
 * statement's result. It is submitted like pg-cursor or pg-query-stream
 * (`client.query(submittable)`, pg's extension point); pg's own Query does the
 * statement's part (parse, bind, describe, execute, sync) and parses its rows.
 *
 * The server answers each prefix statement with ParseComplete (if parsed),
 * BindComplete, its row (without RowDescription: no Describe is sent for it)
 * and CommandComplete; that row and that CommandComplete are dropped here. An
 * error anywhere makes the server skip the rest of the batch up to the Sync and
 * answer ErrorResponse, which pg hands to this query as its error.
 */
class BoundQuery extends PgQuery {
  /** Prefix statements whose CommandComplete has arrived. */
  private prefixDone = 0;
  /** The named prefix statements sent: their index in `prefix`, and whether they were parsed here. */
  private named: { index: number; name: string; parsed: boolean }[] = [];

  constructor(
    config: PgQueryConfig,
    private readonly prefix: PrefixStatement[],
  ) {
    super(config);
  }

  /** Always the extended protocol (pg sends a statement without parameters as a simple query). */
  requiresPreparation(): boolean {
    return true;
  }

  override prepare(connection: PgConnection): void {
    // pg corks the socket around prepare(): the batch leaves in one write.
    const prepared = unnamedOn.has(connection) ? undefined : (preparedOn.get(connection) ?? new Set<string>());
    this.prefix.forEach((p, index) => {
      if (prepared === undefined) {
        connection.parse({ text: p.sql });
        connection.bind({ values: p.values });
      } else {
        const name = statementName(p.sql);
        const parsed = !prepared.has(name);
        if (parsed) connection.parse({ text: p.sql, name });
        connection.bind({ statement: name, values: p.values });
        this.named.push({ index, name, parsed });
      }
      connection.execute({});
    });
    super.prepare(connection);
  }

  override handleRowDescription(msg: unknown): void {
    if (this.prefixDone === this.prefix.length) super.handleRowDescription(msg);
  }

  override handleDataRow(msg: unknown): void {
    if (this.prefixDone === this.prefix.length) super.handleDataRow(msg);
  }

  override handleCommandComplete(msg: unknown, connection: PgConnection): void {
    if (this.prefixDone === this.prefix.length) return super.handleCommandComplete(msg, connection);
    const named = this.named.find((n) => n.index === this.prefixDone);
    if (named?.parsed) {
      let prepared = preparedOn.get(connection);
      if (prepared === undefined) preparedOn.set(connection, (prepared = new Set()));
      prepared.add(named.name);
    }
    this.prefixDone++;
  }

  override handleError(err: Error, connection: PgConnection): void {
    if (connection && this.named.some((n) => n.index >= this.prefixDone)) unnamedOn.add(connection);
    super.handleError(err, connection);
  }
}

/** Knex's pg `_query` (lib/dialects/postgres/index.js), with `prefix` sent before the statement in the same batch. */
function sendBound(connection: pg.Client, obj: QueryObject, prefix: PrefixStatement[]): Promise<QueryObject> {
  if (!obj.sql) return Promise.reject(new Error("The query is empty"));
  return new Promise((resolve, reject) => {
    const query = new BoundQuery(
      {
        text: obj.sql,
        values: obj.bindings ?? [],
        ...obj.options,
        callback: (err, response) => {
          if (err) return reject(err);
          obj.response = response;
          resolve(obj);
        },
      },
      prefix,
    );
    connection.query(query as unknown as pg.Submittable);
  });
}
