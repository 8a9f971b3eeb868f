import type { Knex } from "knex";
import { presumeDead } from "../connection/answer-timeout.js";
import { isUnanswered } from "../errors/database-errors.js";

// How a tenant unit of work reaches the database on the default path, with
// public APIs only (src/tenancy/row-level-security.ts says what a unit
// guarantees, owns the deadline and picks this path or the pipelined one).
//
// The unit is a Knex transaction (`knex.transaction(work, { connection })`,
// on the connection the caller acquired) whose first statement, right after
// Knex's BEGIN, is the binding: one SELECT of set_config(..., true), its values
// as bind parameters. It goes through the driver's own `query(text, values)`
// (pg.Client and PGlite both have it), so the application's Knex 'query'
// listeners (tracing) see the work's statements, not the binding. A binding
// that fails fails the unit: nothing of the work runs.
//
// Every statement of the work passes the transaction's 'query' event (Knex
// emits it before the statement goes to the driver, and a listener that throws
// refuses it), where the unit refuses:
// - a statement sent once the call's deadline has passed (DEADLINE_EXCEEDED);
// - in a unit of kind "statement" (TenantScope.run), a second statement.
// Kind "statement" commits once its statement was sent, whatever the work does
// next (a statement that failed leaves an aborted transaction, which COMMIT
// rolls back), as the pipelined path commits it with its batch. The unit's
// Knex cannot open a transaction of its own (a savepoint) and, once the unit
// ended, Knex itself refuses its statements.
//
// Round trips: BEGIN, the binding, each statement, COMMIT or ROLLBACK, one
// each, also for a unit that runs no statement. On PostgreSQL the pipelined
// unit (src/tenancy/pipelined-unit.ts) needs one for a statement unit in all;
// on PGlite, in process, a round trip is a function call.

/** What a unit runs: its kind, its binding and its deadline. */
export interface TenantUnit {
  /** "statement": exactly one statement; "transaction": any number, in one explicit transaction. */
  kind: "statement" | "transaction";
  /**
   * The binding statement: a SELECT with bind parameters ($1, ...) and their
   * values (never inside the text). It throws when the deadline has passed.
   */
  binding(): { sql: string; values: string[] };
  /** Throws DEADLINE_EXCEEDED when the deadline has passed: no statement may start. */
  checkDeadline(): void;
}

/** The driver connection's own query method (pg.Client, PGlite). */
interface DriverConnection {
  query(sql: string, values: unknown[]): Promise<unknown>;
}

/**
 * Runs `work` as one unit on `connection` (acquired from `knex`'s pool by the
 * caller, who releases it once this settles): commits when `work` resolves,
 * rolls back when it rejects (kind "statement": committed once sent).
 */
export type UnitRunner = <T>(knex: Knex, connection: unknown, unit: TenantUnit, work: (db: Knex.Transaction) => Promise<T>) => Promise<T>;

/** A unit's refusals, the same on both paths. */
export const refusal = {
  secondStatement: () =>
    new Error("a tenant unit of kind \"statement\" (TenantScope.run) ran a second statement: use TenantScope.transaction for several"),
  nestedTransaction: () => new Error("a tenant unit cannot open a transaction of its own"),
};

/** The default path: a Knex transaction whose first statement is the binding. */
export const runTenantUnit: UnitRunner = async (knex, connection, unit, work) => {
  let result: { value: Awaited<ReturnType<typeof work>> } | undefined;
  /** The binding's or the work's error, when either failed. */
  let failure: { error: unknown } | undefined;
  try {
    await knex.transaction(async (trx) => {
      let statements = 0;
      const admit = () => {
        unit.checkDeadline();
        if (unit.kind === "statement" && statements > 0) throw refusal.secondStatement();
        statements++;
      };
      try {
        const binding = unit.binding();
        await (connection as DriverConnection).query(binding.sql, binding.values);
        trx.on("query", admit);
        for (const name of ["transaction", "savepoint"]) {
          Object.defineProperty(trx, name, { value: () => Promise.reject(refusal.nestedTransaction()), configurable: true });
        }
        result = { value: await work(trx) };
      } catch (error) {
        failure = { error };
        // A connection that did not answer in time is presumed dead (a
        // partition): closed now, so that the ROLLBACK fails at once instead
        // of waiting behind the unanswered statement, and the pool discards it.
        if (isUnanswered(error)) presumeDead(connection);
      } finally {
        trx.off("query", admit);
      }
      // Thrown: Knex rolls back. Returned: Knex commits.
      if (failure !== undefined && !(unit.kind === "statement" && statements > 0)) throw failure.error;
    }, { connection });
  } catch (err) {
    // Knex rejects with another error than the one thrown above when COMMIT
    // or ROLLBACK failed: the connection may still hold the tenant's
    // transaction and must not serve anyone else.
    if (failure === undefined || err !== failure.error) presumeDead(connection);
    throw failure === undefined ? err : failure.error;
  }
  if (failure !== undefined) throw failure.error;
  return result!.value;
};
