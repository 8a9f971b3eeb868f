import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Knex } from "knex";
import { Code, ConnectError } from "@connectrpc/connect";
import { tenantTransaction } from "./row-level-security.js";

/**
 * The mark (Knex's `.options(PLAN_ONCE)`) of a statement that a unary call
 * runs often and whose best plan does not depend on its values: a lookup or
 * write of rows by their key. On PostgreSQL such a statement is prepared once
 * per connection and planned once (a generic plan), not on every call, which
 * was most of what such a call cost PostgreSQL (src/tenancy/pipelined-unit.ts;
 * docs/performance.md, "Planning on every call"). Not for statements whose
 * plan depends on their values (pages, batches, ranges: a claim batch planned
 * generically read every row of the tenant per batch).
 */
export const PLAN_ONCE: Readonly<{ planOnce: true }> = { planOnce: true };

/**
 * The only way a handler reaches the database: every query runs through the
 * scope of the one tenant the call acts for. Query modules take a TenantScope
 * (never a bare Knex) and filter and write `tenant_id` from it.
 *
 * Every unit of work runs in a transaction bound to the tenant by PostgreSQL
 * row-level security (see row-level-security.ts), so that a query that forgets
 * its filter still sees and changes only the caller's rows, and bounded by the
 * call's deadline, when it has one.
 */
export class TenantScope {
  constructor(
    /** The tenant, a lowercase UUID. */
    readonly tenantId: string,
    private readonly knex: Knex,
    /** When the call's client stops waiting (epoch ms); undefined: no deadline. */
    readonly deadline?: number,
  ) {}

  /** This scope bounded by a deadline `timeoutMs` from now (undefined: none). */
  withTimeout(timeoutMs: number | undefined): TenantScope {
    return timeoutMs === undefined ? this : new TenantScope(this.tenantId, this.knex, Date.now() + timeoutMs);
  }

  /**
   * Runs `work` (any number of statements) in one transaction of this tenant:
   * committed when `work` resolves, rolled back when it rejects.
   */
  transaction<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return tenantTransaction(this.knex, this.tenantId, this.deadline, work, "transaction");
  }

  /**
   * Runs `work`, which sends exactly one statement, as this tenant: the
   * statement is its own transaction, and commits once it succeeds (on
   * PostgreSQL, by default, in the same round trip as the binding: as fast as
   * the bare statement; see row-level-security.ts), whatever `work` does with
   * its result. A second statement is
   * refused (it would not be bound to the tenant): use `transaction` for
   * several. Running no statement is fine.
   */
  run<T>(work: (db: Knex) => Promise<T>): Promise<T> {
    return tenantTransaction(this.knex, this.tenantId, this.deadline, work, "statement");
  }
}

/** Context key under which the tenancy interceptor stores the call's TenantScope. */
export const kTenantScope = createContextKey<TenantScope | undefined>(undefined, {
  description: "tenant scope of the call",
});

/** The TenantScope of a call of one of our services. */
export function tenantScope(ctx: HandlerContext): TenantScope {
  const scope = ctx.values.get(kTenantScope);
  // The tenancy interceptor runs before every handler of our services; reaching
  // this is a wiring bug.
  if (scope === undefined) throw new ConnectError("no tenant scope", Code.Internal);
  // Interceptors do not see the call's deadline (only its signal); the handler
  // context has it. Its timeoutMs() counts down to one fixed instant, so every
  // scope returned for a call has the same deadline.
  return scope.withTimeout(ctx.timeoutMs());
}
